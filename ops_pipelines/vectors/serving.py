"""What serves each container: its alias, whichever store keeps it.

A Qdrant server keeps ``kb_<slug>`` as a real alias, moved after the metadata DB has recorded
the new live generation (one atomic alias update; a crash between the two is converged by the
next sync, swap or rollback). The embedded engine has no aliases: the live generation recorded in
the metadata DB *is* the alias, so it moves in the same transaction as the generation records
and a rollback is one write. Readers resolve it in one query, so none sees a half-swapped alias.
"""

from __future__ import annotations

from ops_pipelines.kb import Container, KnowledgeBase
from ops_pipelines.vectors.base import VectorStore, alias_name


def serving_collection(kb: KnowledgeBase, store: VectorStore, container: Container) -> str | None:
    """The collection a search of ``container`` reaches now, None if nothing serves it."""
    if store.keeps_aliases:
        return store.resolve_alias(alias_name(container.slug))
    live = kb.live_generation(container.id)
    if live is None or store.collection_dimension(live.collection) is None:
        return None
    return live.collection


def served_collections(kb: KnowledgeBase, store: VectorStore, excluding: Container | None = None) -> set[str]:
    """Every collection an alias serves (on a server, ours or not), but through the alias of
    container ``excluding`` (being removed, its alias goes with it)."""
    if store.keeps_aliases:
        own = alias_name(excluding.slug) if excluding is not None else None
        return {collection for alias, collection in store.aliases().items() if alias != own}
    others = (c for c in kb.list_containers() if excluding is None or c.id != excluding.id)
    return {name for c in others if (name := serving_collection(kb, store, c))}


def publish(store: VectorStore, container: Container, collection: str) -> bool:
    """Point the container's alias at ``collection``, which the metadata DB records as live
    already; True if an alias moved (never on the embedded engine: the record is the alias)."""
    alias = alias_name(container.slug)
    if not store.keeps_aliases or store.resolve_alias(alias) == collection:
        return False
    store.point_alias(alias, collection)
    return True


def publish_all(kb: KnowledgeBase, store: VectorStore) -> None:
    """Every container's alias on its recorded live generation, and no alias of ours left on a
    container that no longer exists, in one atomic update (after a restore)."""
    if not store.keeps_aliases:
        return
    wanted = {}
    for container in kb.list_containers():
        live = kb.live_generation(container.id)
        if live is not None:
            wanted[alias_name(container.slug)] = live.collection
    store.replace_aliases(wanted, prefix=alias_name(""))
