"""Schema versions and the steps between them.

Each migration is a function of a connection inside one transaction; ``migrate`` applies the
missing ones in order and records the version, so an interrupted migration leaves the old
version in place. A database newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, insert, inspect, select

from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import schema


class SchemaTooNew(OperatorError, RuntimeError):
    pass


def _v1_initial(conn: Connection) -> None:
    schema.metadata.create_all(
        conn,
        tables=[schema.containers, schema.documents, schema.chunks, schema.embeddings],
    )


# The characters vectors.generation_name replaced in collection names at schema version 1.
_V1_UNSAFE = re.compile(r"[^a-z0-9-]+")


def _v2_generations(conn: Connection) -> None:
    """Generation records; each container's existing live collection becomes its first row."""
    schema.generations.create(conn)
    c = schema.containers.c
    live = conn.execute(
        select(c.id, c.slug, c.embedder_version, c.active_generation).where(c.active_generation.is_not(None))
    ).all()
    rows = [
        dict(
            container_id=row.id,
            number=row.active_generation,
            embedder_version=row.embedder_version,
            # the collection name sync used at schema version 1 (vectors.generation_name then)
            collection=f"kb_{row.slug}__{_V1_UNSAFE.sub('-', row.embedder_version.lower()).strip('-')}"
            f"__g{row.active_generation}",
            state="live",
            created_at=datetime.now(timezone.utc),
            activated_at=datetime.now(timezone.utc),
        )
        for row in live
    ]
    if rows:
        conn.execute(insert(schema.generations), rows)


def _v3_source_state(conn: Connection) -> None:
    """Per-container connector state (cursors, HTTP validators) and circuit breaker."""
    schema.source_state.create(conn)


def _v4_leases(conn: Connection) -> None:
    """Container and whole-KB leases: one writing operation at a time."""
    schema.leases.create(conn)


def _v5_imports(conn: Connection) -> None:
    """Container states (an import's container is written under a temporary slug, the one it
    replaces is parked) and the vectors of imported archives, kept out of the shared cache."""
    present = {c["name"] for c in inspect(conn).get_columns("containers")}  # v1 creates today's table
    if "state" not in present:
        conn.exec_driver_sql("ALTER TABLE containers ADD COLUMN state VARCHAR(16) DEFAULT 'ready' NOT NULL")
    if "import_slug" not in present:
        conn.exec_driver_sql("ALTER TABLE containers ADD COLUMN import_slug VARCHAR(64)")
    schema.archive_vectors.create(conn)


def _v6_chunkers(conn: Connection) -> None:
    """Chunks keyed by chunker as well (a rotation to a version with another chunker cuts its own
    beside the live ones); ``documents.chunked_hash`` becomes a row of ``chunk_sets`` per chunker.
    Every chunk until now was cut by para-800@1."""
    postgres = conn.dialect.name == "postgresql"
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_chunks_content_hash")
    conn.exec_driver_sql("ALTER TABLE chunks RENAME TO chunks_v5")
    if postgres:  # constraint and index names are per schema there, not per table
        conn.exec_driver_sql("ALTER TABLE chunks_v5 RENAME CONSTRAINT chunks_pkey TO chunks_v5_pkey")
        conn.exec_driver_sql("ALTER TABLE chunks_v5 RENAME CONSTRAINT chunks_document_id_fkey TO chunks_v5_document_id_fkey")
    schema.chunks.create(conn)
    conn.exec_driver_sql(
        "INSERT INTO chunks (document_id, chunker, ordinal, text, content_hash) "
        "SELECT document_id, 'para-800@1', ordinal, text, content_hash FROM chunks_v5"
    )
    conn.exec_driver_sql("DROP TABLE chunks_v5")
    schema.chunk_sets.create(conn)
    present = {c["name"] for c in inspect(conn).get_columns("documents")}
    if "chunked_hash" in present:  # v1 creates today's documents table, without it
        conn.exec_driver_sql(
            "INSERT INTO chunk_sets (document_id, chunker, content_hash) "
            "SELECT id, 'para-800@1', chunked_hash FROM documents WHERE chunked_hash IS NOT NULL"
        )
        conn.exec_driver_sql("ALTER TABLE documents DROP COLUMN chunked_hash")


def _v7_golden_sets(conn: Connection) -> None:
    """Golden query sets per container, for the retrieval-quality evaluations."""
    schema.golden_sets.create(conn)


def _v8_quality_bounds(conn: Connection) -> None:
    """A generation's calibrated least search score; a container's own quality-gate bounds."""
    _add_columns(conn, "generations", [("min_score", "FLOAT")])
    schema.quality_gates.create(conn)


def _v9_fields(conn: Connection) -> None:
    """Document fields (what the source knows of a document besides its text, which every point
    carries), the field names declared per container, and the fields revisions that say which
    points carry stale fields (``kb.fields``). Existing documents' fields are NULL, not known
    yet: the next sync reads them from the source, and writes their points again."""
    columns = {
        "containers": [("declared_fields", "TEXT"), ("fields_revision", "INTEGER DEFAULT 0 NOT NULL")],
        "documents": [("fields", "TEXT"), ("fields_revision", "INTEGER DEFAULT 0 NOT NULL")],
        "generations": [("fields_revision", "INTEGER DEFAULT 0 NOT NULL")],
    }
    for table, wanted in columns.items():
        _add_columns(conn, table, wanted)


def _add_columns(conn: Connection, table: str, wanted: list[tuple[str, str]]) -> None:
    """Add the (name, SQL type) columns ``table`` lacks: v1 and v2 create today's tables, which
    have them already."""
    present = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, kind in wanted:
        if name not in present:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


MIGRATIONS: list[Callable[[Connection], None]] = [
    _v1_initial, _v2_generations, _v3_source_state, _v4_leases, _v5_imports, _v6_chunkers, _v7_golden_sets,
    _v8_quality_bounds, _v9_fields,
]
LATEST = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        return 0
    return conn.execute(select(schema.schema_version.c.version)).scalar() or 0


def migrate(engine: Engine) -> int:
    """Bring the database to ``LATEST``; returns the version it started from. A database already
    there is only read; otherwise one migrator at a time, across processes."""
    with engine.connect() as conn:
        start = current_version(conn)
    if start == LATEST:
        return start
    with engine.begin() as conn:
        # The lock from the first statement on (two creating schema_version at once collide, and
        # whoever waited finds the work done); released at commit.
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        else:  # SQLite: the write lock now, not at the first write (waits up to the busy timeout)
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        schema.schema_version.create(conn, checkfirst=True)
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
