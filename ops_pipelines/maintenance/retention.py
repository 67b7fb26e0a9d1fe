"""Retention of what rollback keeps: collection generations, and the embedding cache and chunks
behind them.

Generations beyond retention are dropped by the same ``prune_generations`` every swap applies.
The cache keeps the vectors of every embedder version a container uses or a kept generation
holds (rolling back makes that generation live, and the next sync fills it from the cache);
only versions nothing refers to any more are deleted. Likewise a container's chunks under a
chunker none of those versions cuts with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import delete, func, select, union

from ops_pipelines.embedders import UnknownEmbedderVersion, get_version
from ops_pipelines.kb import KnowledgeBase, schema
from ops_pipelines.kb.generations import DROPPED
from ops_pipelines.maintenance.common import frame
from ops_pipelines.refresh import prune_generations
from ops_pipelines.vectors import VectorStore

_log = logging.getLogger(__name__)

GENERATION_RETENTION = 2  # the live generation and one to roll back to
KEPT = "kept: in use"


@dataclass(frozen=True)
class DroppedGeneration:
    container: str  # slug
    generation: int
    collection: str
    embedder_version: str
    state: str  # what it was: retired, or building (an abandoned shadow)
    action: str  # dropped, or "would drop" on a dry run


@dataclass(frozen=True)
class GenerationRetentionReport:
    retention: int
    generations: tuple[DroppedGeneration, ...]
    dry_run: bool

    @property
    def table(self) -> pd.DataFrame:
        return frame(DroppedGeneration, self.generations)


@dataclass(frozen=True)
class CachedVersion:
    embedder_version: str
    rows: int
    action: str  # KEPT, deleted, or "would delete" on a dry run


@dataclass(frozen=True)
class CachePruneReport:
    versions: tuple[CachedVersion, ...]
    dry_run: bool

    @property
    def rows_deleted(self) -> int:
        return sum(v.rows for v in self.versions if v.action != KEPT)

    @property
    def table(self) -> pd.DataFrame:
        return frame(CachedVersion, self.versions)


@dataclass(frozen=True)
class ChunkerChunks:
    container: str  # slug
    chunker: str
    chunks: int
    action: str  # KEPT, deleted, "would delete" on a dry run, or why it was kept


@dataclass(frozen=True)
class ChunkPruneReport:
    chunkers: tuple[ChunkerChunks, ...]
    dry_run: bool

    @property
    def chunks_deleted(self) -> int:
        return sum(c.chunks for c in self.chunkers if c.action in ("deleted", "would delete"))

    @property
    def table(self) -> pd.DataFrame:
        return frame(ChunkerChunks, self.chunkers)

def prune_old_generations(
    kb: KnowledgeBase,
    store: VectorStore,
    retention: int = GENERATION_RETENTION,
    dry_run: bool = False,
    log: logging.Logger = _log,
) -> GenerationRetentionReport:
    """Apply generation retention to every container (never dropping what the alias serves)."""
    dropped = []
    for container in kb.list_containers():
        by_collection = {g.collection: g for g in kb.generations(container.id)}
        for name in prune_generations(kb, store, container, retention, log=log, dry_run=dry_run):
            g = by_collection[name]
            action = "would drop" if dry_run else "dropped"
            dropped.append(DroppedGeneration(container.slug, g.number, name, g.embedder_version, g.state, action))
    return GenerationRetentionReport(retention, tuple(dropped), dry_run)


def prune_embedding_cache(kb: KnowledgeBase, dry_run: bool = False, log: logging.Logger = _log) -> CachePruneReport:
    """Delete the cached vectors of retired embedder versions: no container's current version and
    no version of a generation that is not dropped. One statement per version, each re-checking
    that the version is still unused."""
    e, c, g = schema.embeddings.c, schema.containers.c, schema.generations.c
    in_use = union(select(c.embedder_version), select(g.embedder_version).where(g.state != DROPPED))
    with kb.engine.connect() as conn:
        counts = conn.execute(
            select(e.embedder_version, func.count()).group_by(e.embedder_version).order_by(e.embedder_version)
        ).all()
        used = set(conn.execute(in_use).scalars())
    versions = []
    for version, rows in counts:
        if version in used:
            versions.append(CachedVersion(version, rows, KEPT))
            continue
        if not dry_run:
            with kb.engine.begin() as conn:
                rows = conn.execute(
                    delete(schema.embeddings).where(e.embedder_version == version, e.embedder_version.not_in(in_use))
                ).rowcount
        versions.append(CachedVersion(version, rows, "would delete" if dry_run else "deleted"))
        log.info("embedding cache: %s %d rows of retired version %s", versions[-1].action, rows, version)
    return CachePruneReport(tuple(versions), dry_run)


def prune_chunks(kb: KnowledgeBase, dry_run: bool = False, log: logging.Logger = _log) -> ChunkPruneReport:
    """Delete each container's chunks cut by a chunker that neither its current version nor the
    version of any generation not dropped cuts with (a rotation to another chunker left them).
    Run under the knowledge base's lease, as maintenance is: no refresh is cutting a new version's
    chunks meanwhile. A container that names a version the registry lacks is left alone."""
    ch, sets, d = schema.chunks.c, schema.chunk_sets.c, schema.documents.c
    found = []
    for container in kb.list_containers():
        with kb.engine.connect() as conn:
            counts = conn.execute(
                select(ch.chunker, func.count())
                .join_from(schema.chunks, schema.documents, ch.document_id == d.id)
                .where(d.container_id == container.id)
                .group_by(ch.chunker)
                .order_by(ch.chunker)
            ).all()
        versions = {container.embedder_version} | {
            g.embedder_version for g in kb.generations(container.id) if g.state != DROPPED
        }
        try:
            used = {get_version(v).chunker for v in versions}
        except UnknownEmbedderVersion:
            found += [ChunkerChunks(container.slug, c, n, "kept: a version is not in the registry") for c, n in counts]
            continue
        for chunker, n in counts:
            if chunker in used:
                found.append(ChunkerChunks(container.slug, chunker, n, KEPT))
                continue
            if not dry_run:
                of_container = select(d.id).where(d.container_id == container.id)
                with kb.engine.begin() as conn:
                    n = conn.execute(
                        delete(schema.chunks).where(ch.chunker == chunker, ch.document_id.in_(of_container))
                    ).rowcount
                    conn.execute(delete(schema.chunk_sets).where(sets.chunker == chunker, sets.document_id.in_(of_container)))
            found.append(ChunkerChunks(container.slug, chunker, n, "would delete" if dry_run else "deleted"))
            log.info("chunks: %s %d of %s cut by %s, which none of its versions uses", found[-1].action, n,
                     container.slug, chunker)
    return ChunkPruneReport(tuple(found), dry_run)
