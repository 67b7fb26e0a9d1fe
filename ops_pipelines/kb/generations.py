"""Generation records: which Qdrant collections a container has, and which one is live.

A refresh opens a ``building`` generation, fills it, and activates it: in one transaction the
previous live generation becomes ``retired`` (kept for rollback), the new one ``live``, and the
container's embedder version and active generation follow. The Qdrant alias is moved after
that commit, and every sync re-points the alias at the recorded live generation, so a crash
between the two converges on the next run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Engine

from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import schema
from ops_pipelines.kb.clock import utcnow

BUILDING, LIVE, RETIRED, DROPPED = "building", "live", "retired", "dropped"


class GenerationNotFound(OperatorError, LookupError):
    pass


@dataclass(frozen=True)
class Generation:
    container_id: str
    number: int
    embedder_version: str
    collection: str
    state: str
    created_at: datetime
    activated_at: datetime | None
    fields_revision: int = 0  # the container's fields revision its points' fields are up to (``kb.fields``)
    min_score: float | None = None  # calibrated on the golden set (``quality.calibrate``)


class GenerationRecords:
    """Mixed into ``KnowledgeBase``: the generation rows of the metadata DB."""

    engine: Engine

    def generations(self, container_id: str) -> list[Generation]:
        g = schema.generations.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.generations).where(g.container_id == container_id).order_by(g.number)
            )
            return [Generation(**r._mapping) for r in rows]

    def generation(self, container_id: str, number: int) -> Generation:
        for gen in self.generations(container_id):
            if gen.number == number:
                return gen
        raise GenerationNotFound(f"generation {number} does not exist for this container")

    def live_generation(self, container_id: str) -> Generation | None:
        return next((g for g in self.generations(container_id) if g.state == LIVE), None)

    def live_generations(self) -> dict[str, Generation]:
        """Container id -> its live generation, for every container that has one, in one query."""
        g = schema.generations.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.generations).where(g.state == LIVE))
            return {r.container_id: Generation(**r._mapping) for r in rows}

    def open_generation(
        self,
        container_id: str,
        embedder_version: str,
        collection_name: Callable[[int], str],
        state: str = BUILDING,
        exists: Callable[[str], bool] = lambda name: False,
    ) -> tuple[Generation, bool]:
        """The building generation of ``embedder_version`` if one is left from an earlier run
        (resume it), else a new one numbered after every existing one and past every collection
        name a generation record of any container holds, or that ``exists`` (in the vector store,
        left by no record): a slug can change hands (an import parks the container it replaces,
        a removed container's slug is taken again), and no two containers may ever name one
        collection. True if created."""
        g = schema.generations.c
        with self.engine.begin() as conn:
            if state == BUILDING:
                resumable = conn.execute(
                    select(g.number).where(
                        g.container_id == container_id,
                        g.embedder_version == embedder_version,
                        g.state == BUILDING,
                    ).order_by(g.number.desc())
                ).first()
                if resumable is not None:
                    number, created = resumable.number, False
            if state != BUILDING or resumable is None:
                top = conn.execute(select(func.max(g.number)).where(g.container_id == container_id)).scalar()
                number, created = (top or 0) + 1, True
                while (
                    conn.execute(select(g.number).where(g.collection == collection_name(number)).limit(1)).first()
                    or exists(collection_name(number))
                ):
                    number += 1
                conn.execute(
                    insert(schema.generations).values(
                        container_id=container_id,
                        number=number,
                        embedder_version=embedder_version,
                        collection=collection_name(number),
                        state=state,
                        created_at=utcnow(),
                        activated_at=utcnow() if state == LIVE else None,
                    )
                )
                if state == LIVE:
                    _point_container(conn, container_id, number, embedder_version)
        return self.generation(container_id, number), created

    def recorded_collections(self, excluding: str | None = None) -> set[str]:
        """The collections a generation record (not dropped) of any container names, but those of
        container ``excluding``."""
        g = schema.generations.c
        query = select(g.collection).where(g.state != DROPPED).distinct()
        if excluding is not None:
            query = query.where(g.container_id != excluding)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def activate_generation(self, container_id: str, number: int) -> Generation | None:
        """Make generation ``number`` live; returns the generation it replaced (now retired)."""
        g = schema.generations.c
        target = self.generation(container_id, number)
        if target.state == DROPPED:
            raise GenerationNotFound(f"generation {number} ({target.collection}) was dropped by retention")
        previous = self.live_generation(container_id)
        if previous is not None and previous.number == number:
            return None
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.generations)
                .where(g.container_id == container_id, g.state == LIVE)
                .values(state=RETIRED)
            )
            conn.execute(
                update(schema.generations)
                .where(g.container_id == container_id, g.number == number)
                .values(state=LIVE, activated_at=utcnow())
            )
            _point_container(conn, container_id, number, target.embedder_version)
        return previous

    def set_min_score(self, container_id: str, number: int, min_score: float | None) -> None:
        g = schema.generations.c
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.generations).where(g.container_id == container_id, g.number == number).values(min_score=min_score)
            )

    def retarget_live_generation(self, container_id: str, embedder_version: str) -> None:
        """An in-place refresh: the live generation (and container) now hold another version."""
        g = schema.generations.c
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.generations)
                .where(g.container_id == container_id, g.state == LIVE)
                .values(embedder_version=embedder_version)
            )
            conn.execute(
                update(schema.containers)
                .where(schema.containers.c.id == container_id)
                .values(embedder_version=embedder_version)
            )

    def mark_generation_dropped(self, container_id: str, number: int) -> None:
        g = schema.generations.c
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.generations)
                .where(and_(g.container_id == container_id, g.number == number, g.state != LIVE))
                .values(state=DROPPED)
            )


def _point_container(conn, container_id: str, number: int, embedder_version: str) -> None:
    conn.execute(
        update(schema.containers)
        .where(schema.containers.c.id == container_id)
        .values(active_generation=number, embedder_version=embedder_version)
    )
