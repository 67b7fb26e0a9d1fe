"""The lease every step that writes a container holds (``kb.leases``), named after its run: so two
writers of one container take turns however they were launched (UI, backfill, sensor, CLI)."""

from collections.abc import Iterator
from contextlib import contextmanager

from ops_pipelines.kb import Container, KnowledgeBase, holder_for

# A restore holds the whole-KB lease through a database transaction as long as its collection
# writes (minutes at a million chunks), during which SQLite lets no renewal through: the ttl
# outlasts that. A killed restore's lease is still taken over at once from its own host.
RESTORE_TTL_SECONDS = 6 * 3600.0


@contextmanager
def container_writer(context, kb: KnowledgeBase, slug_or_id: str) -> Iterator[Container]:
    """The container, read again once its lease is held, for the body."""
    container = kb.get_container(slug_or_id)
    with kb.container_lease(container.id, holder_for(context.run_id)):
        yield kb.get_container(container.id)


@contextmanager
def knowledge_base_writer(context, kb: KnowledgeBase, ttl_seconds: float | None = None) -> Iterator[None]:
    """The whole-KB lease (no container writer runs meanwhile), for the body."""
    with kb.kb_lease(holder_for(context.run_id), ttl_seconds=ttl_seconds):
        yield
