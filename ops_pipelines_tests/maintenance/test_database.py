"""Database upkeep on SQLite and PostgreSQL: the statements really run, and the report has sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import column, delete, select, table

from ops_pipelines.kb import schema
from ops_pipelines.maintenance import maintain_database


def fill_and_empty_the_cache(kb, rows: int = 3000) -> None:
    """About 3 MB of vectors written and all but one deleted again: space for VACUUM to reclaim."""
    vectors = np.random.default_rng(0).random((rows, 256))
    hashes = [f"{i:064x}" for i in range(rows)]
    kb.put_embeddings("hash-256@1", hashes, vectors)
    with kb.engine.begin() as conn:
        conn.execute(delete(schema.embeddings).where(schema.embeddings.c.chunk_hash != hashes[0]))


def test_database_upkeep_runs_on_both_backends_and_reports_sizes(kb):
    kb.add_container("docs", "folder", "/srv", "hash-256@1")
    fill_and_empty_the_cache(kb)

    report = maintain_database(kb)
    assert report.backend == kb.engine.dialect.name
    assert report.size_before > 0 and report.size_after > 0
    assert list(report.table.columns) == ["step", "seconds"] and (report.table.seconds >= 0).all()
    if report.backend == "sqlite":
        assert list(report.table.step) == [
            "PRAGMA wal_checkpoint(TRUNCATE)", "VACUUM", "ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"
        ]
        assert report.size_after < report.size_before - 2_000_000  # the deleted vectors' pages are gone
        database = Path(kb.engine.url.database)
        assert report.size_after == database.stat().st_size  # the WAL was truncated
        with kb.engine.connect() as conn:  # ANALYZE wrote statistics of the tables that have rows
            analysed = conn.execute(select(column("tbl")).select_from(table("sqlite_stat1"))).scalars().all()
        assert {"containers", "embeddings"} <= set(analysed)
    else:
        assert set(report.table.step) == {f"VACUUM ANALYZE {t.name}" for t in schema.metadata.sorted_tables}
        stats = table("pg_stat_user_tables", column("relname"), column("last_vacuum"), column("last_analyze"))
        with kb.engine.connect() as conn:
            rows = conn.execute(select(stats.c.relname, stats.c.last_vacuum, stats.c.last_analyze)).all()
        done = {name for name, vacuumed, analysed in rows if vacuumed and analysed}
        assert {t.name for t in schema.metadata.sorted_tables} <= done

    again = maintain_database(kb)  # idempotent: nothing left to reclaim
    assert again.backend == report.backend and again.size_after <= report.size_after + 64 * 1024
