"""What the metrics endpoint says of each container, read from the knowledge base, the vector store
and the object store. Plain Python, read-only, no Dagster.

The metadata DB is read in a fixed handful of queries whatever the number of containers (grouped
counts: ``KnowledgeBase.document_counts_by_container``, ``active_chunk_counts``,
``live_generations``, ``source_states``, plus the containers and the leases). The vector store
costs one point count per live collection (on a server, plus one listing of the aliases). On the
embedded engine a count opens the collection's Qdrant Edge shard, which one process at a time may
hold: a shard a running sync or search holds is not waited for (``VectorStoreBusy`` at once), its
container's points are left out and ``vectors_readable`` is False, and the scrape goes on. Each
shard is released right after its count, so a writer that wants it meanwhile waits milliseconds.

Nothing here carries text, titles, source locations or URLs: only slugs, collection names,
embedder versions and numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ops_pipelines.errors import VectorStoreBusy
from ops_pipelines.ingest.breaker import CLOSED, HALF_OPEN, OPEN
from ops_pipelines.kb import Generation, KnowledgeBase
from ops_pipelines.kb.lease_rows import CONTAINER_PREFIX, KB_KEY

_log = logging.getLogger(__name__)

# ops_container_breaker_state values
BREAKER_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}


@dataclass
class ContainerMetrics:
    slug: str
    active_documents: int = 0
    archived_documents: int = 0
    active_chunks: int | None = None  # None: the chunker of its version is unknown here
    live: Generation | None = None
    last_synced_at: datetime | None = None
    breaker_state: int = 0  # BREAKER_VALUES
    source_failures: int = 0
    being_written: bool = False  # a running writer holds its lease (or the whole knowledge base's)
    points: int | None = None  # of the live collection; None: no live generation, or not readable
    vectors_readable: bool | None = None  # None: no live generation to read
    serving_ok: bool | None = None  # the alias serves the live generation; None: not known


@dataclass
class KnowledgeBaseMetrics:
    containers: list[ContainerMetrics] = field(default_factory=list)


def read_containers(kb: KnowledgeBase, now: datetime, chunker_of: Callable[[str], str], breaker) -> KnowledgeBaseMetrics:
    """Every ready container's counts and state, from the metadata DB alone.

    ``chunker_of(embedder_version)`` names the chunker whose chunks a version's points hold;
    ``breaker(state, now)`` is the breaker status (``closed``/``open``/``half-open``) of a
    ``SourceState`` (``ingest.breaker_status`` under the configured policy)."""
    from ops_pipelines.kb import SourceState

    containers = kb.list_containers()
    documents = kb.document_counts_by_container()
    chunks = kb.active_chunk_counts()
    lives = kb.live_generations()
    states = kb.source_states()
    leases = {lease.key: lease for lease in kb.leases()}
    whole = leases.get(KB_KEY)
    everything_held = whole is not None and not whole.abandoned
    found = []
    for c in containers:
        live = lives.get(c.id)
        metrics = ContainerMetrics(c.slug, last_synced_at=c.last_synced_at)
        counts = documents.get(c.id, {})
        metrics.active_documents, metrics.archived_documents = counts.get("active", 0), counts.get("archived", 0)
        version = live.embedder_version if live else c.embedder_version
        try:
            metrics.active_chunks = chunks.get((c.id, chunker_of(version)), 0)
        except Exception as exc:  # noqa: BLE001 - a version this process does not know (OPS_EMBEDDERS_FILE)
            _log.warning("%s: active chunks not counted: %s", c.slug, type(exc).__name__)
        metrics.live = live
        state = states.get(c.id, SourceState())
        metrics.breaker_state = BREAKER_VALUES[breaker(state, now)]
        metrics.source_failures = state.failures
        lease = leases.get(CONTAINER_PREFIX + c.id)
        metrics.being_written = everything_held or (lease is not None and not lease.abandoned)
        found.append(metrics)
    return KnowledgeBaseMetrics(found)


def read_vectors(store, containers: list[ContainerMetrics]) -> None:
    """Points of each live collection, and whether its alias serves it, into ``containers``.

    A Qdrant server: one listing of the aliases, one count per live collection. The embedded
    engine has no aliases (the metadata DB's record is the alias): serving means the recorded
    collection exists; counting opens its shard without waiting for another process."""
    from ops_pipelines.vectors import CollectionNotFound, alias_name

    aliases = store.aliases() if store.keeps_aliases else None
    for c in containers:
        if c.live is None:
            continue
        collection = c.live.collection
        if aliases is not None:
            c.serving_ok = aliases.get(alias_name(c.slug)) == collection
        try:
            exists = store.collection_dimension(collection) is not None
            if aliases is None:
                c.serving_ok = exists
            if not exists:
                c.vectors_readable = True  # read: it is not there (serving_ok says so)
                continue
            c.points = store.count(collection)
            c.vectors_readable = True
        except VectorStoreBusy:
            c.vectors_readable = False
        except CollectionNotFound:  # dropped between the two calls
            c.serving_ok, c.vectors_readable = False, True
        finally:
            release = getattr(store, "release", None)
            if release is not None:
                release(collection)


def last_backup_at(objects) -> datetime | None:
    """When the newest backup in the object store was written (its key says), None if there is none."""
    from ops_pipelines.backup.catalog import list_backups

    backups = list_backups(objects)
    return backups[0].created_at if backups else None
