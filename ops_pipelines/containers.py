"""Removing a container and everything of it: ``ops-pipelines container remove``, and what an import
uses to undo its own container or drop the one it replaced.

A container's collections are dropped, then its records (documents, chunks, generation records,
source state, the vectors its archive brought) in one delete: a removal killed half way leaves a
container whose records name collections that are gone, and removing it again finishes. A
collection is never dropped while another container's generation record names it, or while
another container's alias serves it. No Dagster imports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import PARKED, READY, Container, ContainerNotFound, KnowledgeBase
from ops_pipelines.vectors import VectorStore, alias_name
from ops_pipelines.vectors.serving import publish, served_collections, serving_collection

_log = logging.getLogger(__name__)


class ContainerServing(OperatorError):
    """The container serves searches: removing it would fail them."""


@dataclass
class Removal:
    container: Container
    dropped: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # collection -> why it was kept


def remove_container(
    kb: KnowledgeBase,
    store: VectorStore,
    slug_or_id: str,
    holder: str,
    force: bool = False,
    log: logging.Logger = _log,
) -> Removal:
    """Remove a container of any state under its lease; ``ContainerServing`` if it serves searches
    and not ``force``."""
    container = kb.get_container(slug_or_id)
    with kb.container_lease(container.id, holder):
        container = kb.get_container(container.id)
        settle_replacement(kb, store, container, holder)
        serving = serving_aliases(kb, store, container)
        if serving and not force:
            shown = ", ".join(f"{alias} -> {collection}" for alias, collection in sorted(serving.items()))
            raise ContainerServing(
                f"container {container.slug!r} serves searches ({shown}): removing it drops its collections and "
                "its searches fail. Run it again with --force to remove it anyway"
            )
        return drop_container(kb, store, container, log)


def serving_aliases(kb: KnowledgeBase, store: VectorStore, container: Container) -> dict[str, str]:
    """The aliases that serve one of the container's collections (embedded: its own, if it is
    ready and its live collection exists)."""
    if not store.keeps_aliases:
        collection = serving_collection(kb, store, container) if container.state == READY else None
        return {alias_name(container.slug): collection} if collection else {}
    ours = {g.collection for g in kb.generations(container.id)}
    return {alias: collection for alias, collection in store.aliases().items() if collection in ours}


def settle_replacement(kb: KnowledgeBase, store: VectorStore, container: Container, holder: str) -> None:
    """For a parked container: the alias of the container that replaced it onto that one's live
    generation, as its import would have done had it not been killed first (a server's alias may
    still serve the parked container's collection)."""
    if container.state != PARKED or not store.keeps_aliases or container.import_slug is None:
        return
    try:
        replacement = kb.get_container(container.import_slug)
    except ContainerNotFound:
        return
    with kb.container_lease(replacement.id, holder):
        live = kb.live_generation(replacement.id)
        if live is not None and store.collection_dimension(live.collection) is not None:
            publish(store, kb.get_container(replacement.id), live.collection)


def drop_container(kb: KnowledgeBase, store: VectorStore, container: Container, log: logging.Logger = _log) -> Removal:
    """Drop the container's collections (but one another container records or serves), then its
    records. No checks of its own: the caller holds its lease and decided it goes."""
    recorded = kb.recorded_collections(excluding=container.id)
    served = served_collections(kb, store, excluding=container)
    removal = Removal(container)
    for name in sorted({g.collection for g in kb.generations(container.id)}):
        if name in recorded:
            removal.kept[name] = "another container's generation records name it"
        elif name in served:
            removal.kept[name] = "another container's alias serves it"
        elif store.drop_collection(name):
            removal.dropped.append(name)
    for name, why in removal.kept.items():
        log.warning("container %s: kept %s: %s", container.slug, name, why)
    kb.delete_container(container.id)
    log.info("container %s (%s) removed, collections dropped: %s", container.slug, container.state, removal.dropped or "none")
    return removal
