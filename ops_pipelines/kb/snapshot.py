"""A consistent, streamed read of one container: what export (and backup) archive.

Everything is read in one transaction (REPEATABLE READ on PostgreSQL; a WAL read snapshot on
SQLite), so a sync running meanwhile cannot make documents, chunks and vectors disagree, and
rows stream in batches, so memory does not grow with the container.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import Connection, func, select
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

    def chunks(self) -> Iterator:
        """Active chunks ordered by (source key, ordinal): the order of an archive's vectors."""
        ch, d = schema.chunks.c, schema.documents.c
        yield from self._stream(
            select(ch.document_id, d.source_key, ch.ordinal, ch.content_hash, ch.text)
            .join_from(schema.chunks, schema.documents, ch.document_id == d.id)
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

    def embeddings(self, embedder_version: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        e = schema.embeddings.c
        wanted = list(set(hashes))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(wanted), 500):
            rows = self.conn.execute(
                select(e.chunk_hash, e.vector).where(
                    e.embedder_version == embedder_version, e.chunk_hash.in_(wanted[start : start + 500])
                )
            )
            found.update({h: np.frombuffer(v, dtype="<f4") for h, v in rows})
        return found

    def _stream(self, query) -> Iterator:
        yield from self.conn.execution_options(yield_per=BATCH).execute(query)


@contextmanager
def container_snapshot(engine: Engine, container_id: str) -> Iterator[ContainerSnapshot]:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield ContainerSnapshot(conn, container_id)
