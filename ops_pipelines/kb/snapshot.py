"""A consistent, streamed read of one container: what export (and backup) archive.

Everything is read in one transaction (REPEATABLE READ on PostgreSQL; a WAL read snapshot on
SQLite), so a sync running meanwhile cannot make documents, chunks and vectors disagree, and
rows stream in batches, so memory does not grow with the container.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, and_, func, select
from sqlalchemy.engine import Engine

from ops_pipelines.kb import schema

BATCH = 1000


class ContainerSnapshot:
    def __init__(self, conn: Connection, container_id: str):
        self.conn = conn
        self.container_id = container_id

    def documents(self) -> Iterator:
        d = schema.documents.c
        yield from self._stream(
            select(
                d.id, d.source_key, d.title, d.uri, d.raw_sha256, d.source_hash, d.content_hash,
                d.source_updated_at, d.text,
            )
            .where(d.container_id == self.container_id, d.status == "active")
            .order_by(d.source_key)
        )

    def chunks(self, embedder_version: str | None = None) -> Iterator:
        """Active chunks ordered by (source key, ordinal): the order of an archive's vectors.
        With ``embedder_version``, each row carries its cached ``vector`` bytes (None if the
        cache lacks it), read in the same pass."""
        ch, d, e = schema.chunks.c, schema.documents.c, schema.embeddings.c
        columns = [ch.document_id, d.source_key, ch.ordinal, ch.content_hash, ch.text]
        joined = schema.chunks.join(schema.documents, ch.document_id == d.id)
        if embedder_version is not None:
            columns.append(e.vector)
            joined = joined.outerjoin(
                schema.embeddings, and_(e.chunk_hash == ch.content_hash, e.embedder_version == embedder_version)
            )
        yield from self._stream(
            select(*columns)
            .select_from(joined)
            .where(d.container_id == self.container_id, d.status == "active")
            .order_by(d.source_key, ch.ordinal)
        )

    def blob_hashes(self) -> Iterator[str]:
        d = schema.documents.c
        for row in self._stream(
            select(d.raw_sha256)
            .where(d.container_id == self.container_id, d.status == "active")
            .distinct()
            .order_by(d.raw_sha256)
        ):
            yield row.raw_sha256

    def count(self, what: str) -> int:
        ch, d = schema.chunks.c, schema.documents.c
        active = (d.container_id == self.container_id, d.status == "active")
        if what == "documents":
            query = select(func.count()).select_from(schema.documents).where(*active)
        elif what == "chunks":
            query = select(func.count()).select_from(schema.chunks.join(schema.documents, ch.document_id == d.id)).where(*active)
        else:
            query = select(func.count(func.distinct(d.raw_sha256))).where(*active)
        return self.conn.execute(query).scalar_one()

    def _stream(self, query) -> Iterator:
        for batch in self.conn.execution_options(yield_per=BATCH).execute(query).partitions():
            yield from batch  # a batch at a time: iterating the result row by row costs more


@contextmanager
def container_snapshot(engine: Engine, container_id: str) -> Iterator[ContainerSnapshot]:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if conn.dialect.name == "sqlite":
                # The sqlite3 driver opens a transaction only before a write: without this BEGIN
                # each SELECT would see the latest commit, not one snapshot.
                conn.exec_driver_sql("BEGIN")
            yield ContainerSnapshot(conn, container_id)
