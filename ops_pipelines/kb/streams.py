"""A container's chunks read batch by batch, never all at once: what lets sync, refresh, the
checks, backup and import keep flat memory at any size.

Passes that only read (``chunk_keys``, ``chunk_points``) are one streamed query each. Passes
whose own writes change what they select (chunking, embedding) page by key instead, each page a
short query of its own, so no read stays open across their writes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from sqlalchemy import LargeBinary, and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ColumnElement, FromClause

from ops_pipelines.kb import schema

BATCH = 2048
_IN_LIST = 500  # ids per IN (...) list


class ChunkStreams:
    """Mixed into ``KnowledgeBase``."""

    engine: Engine

    def chunk_keys(self, container_id: str, chunker: str, batch: int = BATCH) -> Iterator[list[tuple[str, int, str]]]:
        """(document id, ordinal, chunk hash) of every active chunk ``chunker`` cut, no text: what
        point ids are made of."""
        ch, d = schema.chunks.c, schema.documents.c
        query = (
            select(ch.document_id, ch.ordinal, ch.content_hash)
            .join_from(schema.chunks, schema.documents, ch.document_id == d.id)
            .where(d.container_id == container_id, d.status == "active", ch.chunker == chunker)
        )
        yield from _streamed(self.engine, query, batch)

    def active_document_keys(self, container_id: str, batch: int = BATCH) -> Iterator[list[tuple[str, str]]]:
        """(id, source key) of the container's active documents."""
        d = schema.documents.c
        query = select(d.id, d.source_key).where(d.container_id == container_id, d.status == "active")
        yield from _streamed(self.engine, query, batch)

    def chunk_points(
        self, container_id: str, chunker: str, embedder_version: str, document_ids: Collection[str] | None = None,
        batch: int = BATCH, fields_after: int | None = None,
    ) -> Iterator[list]:
        """Rows of the active chunks ``chunker`` cut (of ``document_ids`` only, if given; of the
        documents whose fields changed after revision ``fields_after`` only, if given: ``kb.fields``)
        with what a point needs: document_id, ordinal, content_hash, text, source_key, title, uri,
        the document's ``fields`` (JSON text, NULL if not known yet), its ``fields_revision``, and
        the ``vector`` bytes of ``embedder_version`` the container may use (``with_vectors``; None
        where there is none), ordered by source key and ordinal."""
        ch, d = schema.chunks.c, schema.documents.c
        joined, vector = with_vectors(
            schema.chunks.join(schema.documents, ch.document_id == d.id), container_id, embedder_version
        )
        query = (
            select(
                ch.document_id, ch.ordinal, ch.content_hash, ch.text, d.source_key, d.title, d.uri, d.fields,
                d.fields_revision, vector,
            )
            .select_from(joined)
            .where(d.container_id == container_id, d.status == "active", ch.chunker == chunker)
            .order_by(d.source_key, ch.ordinal)
        )
        if fields_after is not None:
            query = query.where(d.fields_revision > fields_after)
        if document_ids is None:
            yield from _streamed(self.engine, query, batch)
            return
        ids = sorted(document_ids)
        for start in range(0, len(ids), _IN_LIST):
            yield from _streamed(self.engine, query.where(ch.document_id.in_(ids[start : start + _IN_LIST])), batch)

    def documents_to_chunk(
        self, container_id: str, chunker: str, batch: int = 200
    ) -> Iterator[list[tuple[str, str, str]]]:
        """(id, content_hash, text) of active documents whose chunks under ``chunker`` are missing
        or stale, a page at a time, in source key order: each page walks the (container, source
        key) index from where the last one ended, so a pass costs one walk of the container
        whatever its size."""
        d, sets = schema.documents.c, schema.chunk_sets.c
        cut = (
            select(sets.content_hash)
            .where(sets.document_id == d.id, sets.chunker == chunker)
            .scalar_subquery()
        )
        last = ""
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(d.id, d.content_hash, d.text, d.source_key)
                    .where(
                        d.container_id == container_id,
                        d.source_key > last,
                        d.status == "active",
                        or_(cut.is_(None), cut != d.content_hash),
                    )
                    .order_by(d.source_key)
                    .limit(batch)
                ).all()
            if not rows:
                return
            yield [(r.id, r.content_hash, r.text) for r in rows]
            last = rows[-1].source_key

    def chunk_texts(
        self, container_id: str, chunker: str, embedder_version: str | None = None, batch: int = 1024
    ) -> Iterator[list[tuple[str, str]]]:
        """(chunk hash, text) of the container's active chunks ``chunker`` cut, a page at a time, distinct within
        a page; with ``embedder_version``, only those the container has no vector of, in the
        shared cache or from its own archive (``with_vectors``), so a caller that caches a page's
        vectors before asking for the next never meets a hash twice.

        Pages follow the documents' (container, source key) index and each document's chunks,
        the order they lie in on disk, from where the last page ended: a pass costs one walk of
        the container (a page that joined the whole container would cost one walk each)."""
        ch, d, e, a = schema.chunks.c, schema.documents.c, schema.embeddings.c, schema.archive_vectors.c
        query = (
            select(d.source_key, ch.ordinal, ch.content_hash, ch.text)
            .select_from(schema.documents.join(schema.chunks, and_(ch.document_id == d.id, ch.chunker == chunker)))
            .where(d.container_id == container_id, d.status == "active")
            .order_by(d.source_key, ch.ordinal)
            .limit(batch)
        )
        if embedder_version is not None:
            query = query.where(
                ~select(e.chunk_hash)
                .where(e.embedder_version == embedder_version, e.chunk_hash == ch.content_hash)
                .exists()
            )
            query = query.where(
                ~select(a.chunk_hash)
                .where(
                    a.container_id == container_id, a.embedder_version == embedder_version,
                    a.chunk_hash == ch.content_hash,
                )
                .exists()
            )
        key, ordinal = "", -1
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    query.where(d.source_key >= key, ~and_(d.source_key == key, ch.ordinal <= ordinal))
                ).all()
            if not rows:
                return
            yield list({r.content_hash: r.text for r in rows}.items())
            key, ordinal = rows[-1].source_key, rows[-1].ordinal


def with_vectors(
    chunks: FromClause, container_id: str, embedder_version: str
) -> tuple[FromClause, ColumnElement]:
    """``chunks`` (a join with the chunks table) outer-joined with the vectors of
    ``embedder_version`` that container ``container_id`` may use: the shared cache's (computed
    here), else the ones its own imported archive brought (never another container's). Returns the
    join and its ``vector`` column (NULL where there is neither)."""
    ch, e, a = schema.chunks.c, schema.embeddings.c, schema.archive_vectors.c
    joined = chunks.outerjoin(
        schema.embeddings, and_(e.chunk_hash == ch.content_hash, e.embedder_version == embedder_version)
    ).outerjoin(
        schema.archive_vectors,
        and_(a.container_id == container_id, a.chunk_hash == ch.content_hash, a.embedder_version == embedder_version),
    )
    vector = func.coalesce(e.vector, a.vector, type_=LargeBinary).label("vector")
    return joined, vector


def _streamed(engine: Engine, query, batch: int) -> Iterator[list]:
    """One query, its rows fetched ``batch`` at a time (a server-side cursor on PostgreSQL)."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
        for rows in result.partitions():
            yield rows
