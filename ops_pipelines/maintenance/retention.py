"""Retention of what rollback keeps: collection generations, and the embedding cache behind them.

Generations beyond retention are dropped by the same ``prune_generations`` every swap applies.
The cache keeps the vectors of every embedder version a container uses or a kept generation
holds (rolling back makes that generation live, and the next sync fills it from the cache);
only versions nothing refers to any more are deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import delete, func, select, union

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
