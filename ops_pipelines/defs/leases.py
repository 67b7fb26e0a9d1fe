"""The lease of every container a run writes (``kb.leases``), named after the run: two writers of one
container take turns however they were launched (UI, backfill, sensor, CLI).

A run takes a container's lease at its first step that writes it and keeps it until the run ends
(``release_run_leases``, from the teardown of the run's ``KnowledgeBaseResource``), not only for
each step: one writing operation at a time per container. So another refresh's swap never finds a
build in progress between two steps of this one (and drops it as abandoned), and a sync never
changes the chunks between a refresh's build and its checks. Steps of the runs of one process
share its lease; under an executor that runs each step in a process of its own, the lease is held
step by step.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from ops_pipelines.kb import Container, KnowledgeBase, holder_for

# A restore holds the whole-KB lease through a database transaction as long as its collection
# writes (minutes at a million chunks), during which SQLite lets no renewal through: the ttl
# outlasts that. A killed restore's lease is still taken over at once from its own host.
RESTORE_TTL_SECONDS = 6 * 3600.0


class _RunLeases:
    """The container leases a run of this process holds until it ends."""

    def __init__(self):
        self.held = ExitStack()
        self.containers: dict[str, str] = {}  # id -> slug


_runs: dict[str, _RunLeases] = {}
_runs_lock = threading.Lock()


@contextmanager
def container_writer(context, kb: KnowledgeBase, slug_or_id: str) -> Iterator[Container]:
    """The container, read again once its lease is held, for the body; the lease stays held by the
    run until it ends. The run's log says when it took the lease and how long it waited for it."""
    container = kb.get_container(slug_or_id)
    holder, asked = holder_for(context.run_id), time.monotonic()
    with kb.container_lease(container.id, holder):
        waited = time.monotonic() - asked
        if context.run_id and _keep_for_run(context.run_id, kb, container, holder):
            context.log.info(
                f"this run holds the lease of container {container.slug} until it ends"
                + (f" (waited {waited:.1f} s for another writer of it)" if waited >= 0.5 else "")
            )
        yield kb.get_container(container.id)


def _keep_for_run(run_id: str, kb: KnowledgeBase, container: Container, holder: str) -> bool:
    """Keep the lease this step holds for the rest of the run; True if the run did not hold it yet."""
    with _runs_lock:
        run = _runs.setdefault(run_id, _RunLeases())
        if container.id in run.containers:
            return False
        run.held.enter_context(kb.container_lease(container.id, holder))  # this process holds it: no wait
        run.containers[container.id] = container.slug
        return True


def release_run_leases(run_id: str | None, log=None) -> None:
    """Let go of the container leases the run holds (its end)."""
    with _runs_lock:
        run = _runs.pop(run_id, None) if run_id else None
    if run is None:
        return
    try:
        run.held.close()
    finally:
        if log is not None:
            log.info(f"the run lets go of the lease of container {', '.join(sorted(run.containers.values()))}")


@contextmanager
def knowledge_base_writer(context, kb: KnowledgeBase, ttl_seconds: float | None = None) -> Iterator[None]:
    """The whole-KB lease (no container writer runs meanwhile), for the body."""
    with kb.kb_lease(holder_for(context.run_id), ttl_seconds=ttl_seconds):
        yield
