"""Database upkeep: reclaim space and refresh the planner's statistics.

SQLite: a WAL checkpoint (so VACUUM starts from a folded-in database), VACUUM, ANALYZE, and a
second checkpoint, because VACUUM in WAL mode writes the whole rebuilt database into the WAL.
PostgreSQL: VACUUM ANALYZE of the knowledge-base tables (not VACUUM FULL, which locks each table
exclusively while it rewrites it; plain VACUUM makes dead rows reusable and rarely shrinks files).
VACUUM cannot run inside a transaction, so every statement runs on an autocommit connection.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, func, select

from ops_pipelines.kb import KnowledgeBase, schema

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseReport:
    backend: str  # "sqlite" or "postgresql"
    size_before: int  # bytes: the SQLite file plus its -wal file, or pg_database_size
    size_after: int
    step_seconds: tuple[tuple[str, float], ...]  # (statement, seconds), in the order they ran

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.step_seconds), columns=["step", "seconds"])


def maintain_database(kb: KnowledgeBase, log: logging.Logger = _log) -> DatabaseReport:
    backend = kb.engine.dialect.name
    with kb.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        before = _size(kb, conn)
        if backend == "sqlite":
            statements = ["PRAGMA wal_checkpoint(TRUNCATE)", "VACUUM", "ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"]
        else:
            quote = conn.dialect.identifier_preparer.quote
            statements = [f"VACUUM ANALYZE {quote(t.name)}" for t in schema.metadata.sorted_tables]
        steps = []
        for statement in statements:
            started = time.perf_counter()
            result = conn.exec_driver_sql(statement)
            if statement.startswith("PRAGMA wal_checkpoint") and result.first()[0]:
                log.warning("%s could not finish: another connection is reading the database", statement)
            steps.append((statement, round(time.perf_counter() - started, 3)))
            log.info("database: %s in %.2fs", statement, steps[-1][1])
        after = _size(kb, conn)
    log.info("database (%s): %d bytes before, %d after", backend, before, after)
    return DatabaseReport(backend, before, after, tuple(steps))


def _size(kb: KnowledgeBase, conn: Connection) -> int:
    if conn.dialect.name == "postgresql":
        return conn.execute(select(func.pg_database_size(func.current_database()))).scalar_one()
    database = Path(kb.engine.url.database)
    wal = database.with_name(database.name + "-wal")
    return sum(p.stat().st_size for p in (database, wal) if p.exists())
