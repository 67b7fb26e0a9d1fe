"""What a container's source connector keeps between runs, and its circuit breaker.

One row per container, made on first use. ``state`` is the connector's own JSON (a Redmine
``updated_on`` cursor, the ETag/Last-Modified of every HTTP page); sync writes it only after the
documents it describes are committed, so a run that dies is redone from the old state, never
skipped. The breaker columns count consecutive failed syncs; ``opened_until`` is the time before
which syncs fail fast without contacting the source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from ops_pipelines.kb import schema
from ops_pipelines.kb.clock import utcnow


@dataclass(frozen=True)
class SourceState:
    state: dict = field(default_factory=dict)
    full_synced_at: datetime | None = None
    failures: int = 0
    opened_until: datetime | None = None
    last_error: str | None = None
    last_failure_at: datetime | None = None


def as_utc(value: datetime | None) -> datetime | None:
    """An aware UTC datetime: SQLite hands back naive ones (everything this store writes is UTC),
    PostgreSQL aware ones in its session's time zone."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SourceStateRecords:
    """Mixed into ``KnowledgeBase``: the ``source_state`` rows of the metadata DB."""

    engine: Engine

    def source_state(self, container_id: str) -> SourceState:
        s = schema.source_state.c
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.source_state).where(s.container_id == container_id)).first()
        if row is None:
            return SourceState()
        return SourceState(
            state=json.loads(row.state) if row.state else {},
            full_synced_at=as_utc(row.full_synced_at),
            failures=row.failures,
            opened_until=as_utc(row.opened_until),
            last_error=row.last_error,
            last_failure_at=as_utc(row.last_failure_at),
        )

    def source_states(self) -> dict[str, SourceState]:
        """Container id -> its breaker counters (not the connector's state), for every container
        with a row, in one query; a container without one has the default ``SourceState()``."""
        s = schema.source_state.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.container_id, s.failures, s.opened_until, s.last_failure_at))
            return {
                r.container_id: SourceState(
                    failures=r.failures, opened_until=as_utc(r.opened_until), last_failure_at=as_utc(r.last_failure_at)
                )
                for r in rows
            }

    def save_source_state(self, container_id: str, state: dict) -> None:
        """The connector's state after a read whose documents are committed."""
        self._update_state(container_id, {"state": json.dumps(state, sort_keys=True)})

    def record_full_pass(self, container_id: str) -> None:
        """A full reconciliation is done: every document read, and the vanished ones archived."""
        self._update_state(container_id, {"full_synced_at": utcnow()})

    def record_source_success(self, container_id: str) -> None:
        """A sync read its source: the breaker closes."""
        self._update_state(container_id, {"failures": 0, "opened_until": None, "last_error": None})

    def record_source_failure(self, container_id: str, error: str) -> int:
        """One more consecutive failure; returns the count."""
        s = schema.source_state.c
        with self.engine.begin() as conn:
            _ensure_row(conn, container_id)
            conn.execute(
                update(schema.source_state)
                .where(s.container_id == container_id)
                .values(failures=s.failures + 1, last_error=error, last_failure_at=utcnow())
            )
            return conn.execute(select(s.failures).where(s.container_id == container_id)).scalar_one()

    def open_breaker(self, container_id: str, until: datetime) -> None:
        self._update_state(container_id, {"opened_until": until})

    def _update_state(self, container_id: str, values: dict) -> None:
        s = schema.source_state.c
        with self.engine.begin() as conn:
            _ensure_row(conn, container_id)
            conn.execute(update(schema.source_state).where(s.container_id == container_id).values(**values))


def _ensure_row(conn: Connection, container_id: str) -> None:
    """The container's row, inserted unless there (a concurrent insert is not an error)."""
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        dialect_insert(schema.source_state).values(container_id=container_id, failures=0).on_conflict_do_nothing()
    )
