"""A consistent, streamed read of one container: what export (and backup) archive.

Everything is read in one transaction (REPEATABLE READ on PostgreSQL; a WAL read snapshot on
SQLite), so a sync running meanwhile cannot make documents, chunks and vectors disagree, and
rows stream in batches, so memory does not grow with the container.

Rows come as plain tuples in batches, fetched by the DB-API cursor itself (a server-side one on
PostgreSQL): an export reads every row of a container, and SQLAlchemy's Row objects and result
bookkeeping cost it a few percent for nothing it uses.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, func, select
from sqlalchemy.engine import Engine

from ops_pipelines.kb import schema
from ops_pipelines.kb.streams import with_vectors

BATCH = 1000


class ContainerSnapshot:
    def __init__(self, conn: Connection, container_id: str, chunker: str):
        self.conn = conn
        self.container_id = container_id
        self.chunker = chunker  # whose chunks are read
        self._names = itertools.count()  # PostgreSQL's server-side cursors are named
        self._open: set = set()  # cursors of batches not read to the end

    def close(self) -> None:
        """Close the cursors of batches a reader left unfinished (it failed part way): a named
        cursor can be closed only while its transaction lasts."""
        while self._open:
            self._open.pop().close()

    def documents(self) -> Iterator[list[tuple]]:
        """Batches of active documents ordered by source key; each row ends with the document's
        fields as stored (JSON text, None if not known yet: ``kb.fields``)."""
        d = schema.documents.c
        return self._batches(
            select(
                d.id, d.source_key, d.title, d.uri, d.raw_sha256, d.source_hash, d.content_hash,
                d.source_updated_at, d.text, d.fields,
            )
            .where(d.container_id == self.container_id, d.status == "active")
            .order_by(d.source_key)
        )

    def chunks(self, embedder_version: str | None = None) -> Iterator[list[tuple]]:
        """Batches of active chunks ordered by (source key, ordinal): the order of an archive's
        vectors. With ``embedder_version``, each row ends with its cached vector bytes (None if
        the container has none: ``with_vectors``), read in the same pass."""
        ch, d = schema.chunks.c, schema.documents.c
        columns = [ch.document_id, d.source_key, ch.ordinal, ch.content_hash, ch.text]
        joined = schema.chunks.join(schema.documents, ch.document_id == d.id)
        if embedder_version is not None:
            joined, vector = with_vectors(joined, self.container_id, embedder_version)
            columns.append(vector)
        return self._batches(
            select(*columns)
            .select_from(joined)
            .where(d.container_id == self.container_id, d.status == "active", ch.chunker == self.chunker)
            .order_by(d.source_key, ch.ordinal)
        )

    def golden_sets(self) -> list[tuple]:
        """(content_hash, body, queries, created_at) of every version of the container's golden
        set, oldest first (a few at most: read at once)."""
        g = schema.golden_sets.c
        query = select(g.content_hash, g.body, g.queries, g.created_at).where(g.container_id == self.container_id)
        return [row for rows in self._batches(query.order_by(g.created_at, g.content_hash)) for row in rows]

    def blob_hashes(self) -> Iterator[str]:
        d = schema.documents.c
        for rows in self._batches(
            select(d.raw_sha256)
            .where(d.container_id == self.container_id, d.status == "active")
            .distinct()
            .order_by(d.raw_sha256)
        ):
            for (sha,) in rows:
                yield sha

    def count(self, what: str) -> int:
        ch, d = schema.chunks.c, schema.documents.c
        active = (d.container_id == self.container_id, d.status == "active")
        if what == "documents":
            query = select(func.count()).select_from(schema.documents).where(*active)
        elif what == "chunks":
            query = (
                select(func.count())
                .select_from(schema.chunks.join(schema.documents, ch.document_id == d.id))
                .where(*active, ch.chunker == self.chunker)
            )
        else:
            query = select(func.count(func.distinct(d.raw_sha256))).where(*active)
        return self.conn.execute(query).scalar_one()

    def _batches(self, query) -> Iterator[list[tuple]]:
        """The rows of ``query`` as SQLAlchemy would give them (its result processors applied:
        SQLite's datetimes parsed, PostgreSQL's bytea as bytes), read by the DB-API cursor. The
        queries bind plain strings only, which need no bind processing."""
        dialect = self.conn.dialect
        compiled = query.compile(dialect=dialect)
        params = compiled.construct_params()
        if compiled.positional:
            params = tuple(params[name] for name in compiled.positiontup)
        processors = [
            (i, process)
            for i, column in enumerate(query.selected_columns)
            if (process := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
        ]
        dbapi = self.conn.connection.dbapi_connection
        # PostgreSQL: a named (server-side) cursor, or psycopg2 would load every row at once
        cursor = dbapi.cursor(name=f"snapshot_{next(self._names)}") if dialect.name == "postgresql" else dbapi.cursor()
        self._open.add(cursor)
        try:
            cursor.execute(str(compiled), params)
            while rows := cursor.fetchmany(BATCH):
                if processors:
                    rows = [_processed(row, processors) for row in rows]
                yield rows
        finally:
            self._open.discard(cursor)
            cursor.close()  # a second close (by ``close``) does nothing


def _processed(row: tuple, processors: list) -> tuple:
    values = list(row)
    for i, process in processors:
        values[i] = process(values[i])
    return tuple(values)


@contextmanager
def container_snapshot(engine: Engine, container_id: str, chunker: str) -> Iterator[ContainerSnapshot]:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if conn.dialect.name == "sqlite":
                # The sqlite3 driver opens a transaction only before a write: without this BEGIN
                # each SELECT would see the latest commit, not one snapshot.
                conn.exec_driver_sql("BEGIN")
            snapshot = ContainerSnapshot(conn, container_id, chunker)
            try:
                yield snapshot
            finally:
                snapshot.close()
