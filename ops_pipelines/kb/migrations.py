"""Schema versions and the steps between them.

Each migration is a function of a connection inside one transaction; ``migrate`` applies the
missing ones in order and records the version, so an interrupted migration leaves the old
version in place. A database newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, inspect, select

from ops_pipelines.kb import schema


class SchemaTooNew(RuntimeError):
    pass


def _v1_initial(conn: Connection) -> None:
    schema.metadata.create_all(
        conn,
        tables=[schema.containers, schema.documents, schema.chunks, schema.embeddings],
    )


MIGRATIONS: list[Callable[[Connection], None]] = [_v1_initial]
LATEST = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        return 0
    return conn.execute(select(schema.schema_version.c.version)).scalar() or 0


def migrate(engine: Engine) -> int:
    """Bring the database to ``LATEST``; returns the version it started from."""
    with engine.begin() as conn:
        schema.schema_version.create(conn, checkfirst=True)
        if conn.dialect.name == "postgresql":
            # One migrator at a time across processes; released at commit.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        start = current_version(conn)
        if start > LATEST:
            raise SchemaTooNew(
                f"knowledge-base schema is version {start}, this ops-pipelines knows up to "
                f"{LATEST}: upgrade ops-pipelines before using this database"
            )
        for version in range(start + 1, LATEST + 1):
            MIGRATIONS[version - 1](conn)
        if start == 0:
            conn.execute(schema.schema_version.insert().values(version=LATEST))
        elif start < LATEST:
            conn.execute(schema.schema_version.update().values(version=LATEST))
    return start
