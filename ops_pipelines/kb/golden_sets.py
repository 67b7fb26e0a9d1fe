"""Golden query set records: every version a container was given, the latest in use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from ops_pipelines.kb import schema
from ops_pipelines.kb.clock import utcnow


@dataclass(frozen=True)
class QualityBounds:
    """A container's own bounds for the retrieval-quality gate; None: the default."""

    tolerance: float | None = None
    floor: float | None = None


@dataclass(frozen=True)
class GoldenSetRecord:
    content_hash: str
    body: str
    queries: int
    created_at: datetime


class GoldenSetRecords:
    """Mixed into ``KnowledgeBase``."""

    engine: Engine

    def put_golden_set(
        self, container_id: str, content_hash: str, body: str, queries: int, created_at: datetime | None = None
    ) -> bool:
        """Record a version (the latest from now on; an import gives the time it was first
        registered); False if the container had it already, as its latest."""
        current = self.golden_set(container_id)
        if current is not None and current.content_hash == content_hash:
            return False
        g = schema.golden_sets
        with self.engine.begin() as conn:
            conn.execute(g.delete().where(g.c.container_id == container_id, g.c.content_hash == content_hash))
            conn.execute(insert(g).values(
                container_id=container_id, content_hash=content_hash, body=body, queries=queries,
                created_at=created_at or utcnow(),
            ))
        return True

    def golden_set(self, container_id: str) -> GoldenSetRecord | None:
        """The container's latest golden set, None if it has none."""
        versions = self.golden_set_versions(container_id)
        return versions[0] if versions else None

    def golden_set_versions(self, container_id: str) -> list[GoldenSetRecord]:
        """Newest first."""
        g = schema.golden_sets.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(g.content_hash, g.body, g.queries, g.created_at)
                .where(g.container_id == container_id)
                .order_by(g.created_at.desc())
            ).all()
        return [GoldenSetRecord(*row) for row in rows]

    def quality_bounds(self, container_id: str) -> QualityBounds:
        q = schema.quality_gates.c
        with self.engine.connect() as conn:
            row = conn.execute(select(q.tolerance, q.floor).where(q.container_id == container_id)).first()
        return QualityBounds(*row) if row else QualityBounds()

    def set_quality_bounds(self, container_id: str, bounds: QualityBounds) -> None:
        q = schema.quality_gates
        with self.engine.begin() as conn:
            conn.execute(delete(q).where(q.c.container_id == container_id))
            if bounds != QualityBounds():
                conn.execute(insert(q).values(container_id=container_id, tolerance=bounds.tolerance, floor=bounds.floor))
