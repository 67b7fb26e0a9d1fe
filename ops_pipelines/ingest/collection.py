"""Step 4 of sync: make the container's live collection hold exactly its active chunks.

Reconciles by point id (deterministic from container, document, ordinal and chunk hash): ids
that should exist and do not are upserted from the embedding cache, ids that should not exist
are deleted. Whatever happened before (a run killed after the DB write, a partial upsert), the
next run converges, and a re-run with nothing to do writes nothing. A document whose fields
changed while its text did not keeps its point ids: its points are written again, payload and
cached vector, when the collection's fields revision is behind the document's (``kb.fields``).

Memory stays flat at any size: ids are compared as sorted id arrays (``vectors.ids``), and the
text and vectors of a point are read, batch by batch, only for the points being written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from functools import partial

import numpy as np

from ops_pipelines.embedders import get_version
from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import ChunkRow, Container, KnowledgeBase
from ops_pipelines.kb import fields as document_fields
from ops_pipelines.kb.generations import LIVE
from ops_pipelines.progress import Progress
from ops_pipelines.sources import payload_field_names
from ops_pipelines.vectors import VectorStore, alias_name, generation_name
from ops_pipelines.vectors.ids import EMPTY, contains, id_set, id_strings, locate, point_id_array
from ops_pipelines.vectors.reconcile import ID_FIELDS
from ops_pipelines.vectors.serving import publish

_log = logging.getLogger(__name__)


class MissingEmbeddings(OperatorError, RuntimeError):
    """``missing`` active chunks have no vector of the version being written."""

    def __init__(self, message: str, missing: int = 0):
        super().__init__(message)
        self.missing = missing


@dataclass
class CollectionReport:
    collection: str
    alias: str
    generation: int
    embedder_version: str
    created: bool
    upserted: int
    deleted: int
    points: int
    index_seconds: float | None = None


def chunk_payload(container: Container, row: ChunkRow) -> dict:
    return {
        "container_id": container.id,
        "document_id": row.document_id,
        "source_key": row.source_key,
        "title": row.title,
        "uri": row.uri,
        "ordinal": row.ordinal,
        "chunk_hash": row.content_hash,
        "text": row.text,
        "fields": dict(row.fields),  # filters name fields.<name>
    }


def index_fields(store: VectorStore, container: Container, collection: str) -> None:
    """Keyword indexes on ``fields.<name>`` for every field the container's source gives its
    documents (a JSONL source: the declared ones), so a filtered search does not scan; idempotent."""
    for name in payload_field_names(container.source_kind, container.declared_fields):
        store.create_field_index(collection, f"fields.{name}")


def sync_collection(
    kb: KnowledgeBase, store: VectorStore, container: Container, log: logging.Logger = _log
) -> CollectionReport:
    """Bring the live generation (created as generation 1 on a first sync) up to date, and index it
    where that pays."""
    live = kb.live_generation(container.id)
    if live is None:
        first = get_version(container.embedder_version).name
        live, _ = kb.open_generation(
            container.id, first, lambda n: generation_name(container.slug, first, n), state=LIVE
        )
    version = get_version(live.embedder_version)
    created = store.ensure_collection(live.collection, version.dimension, version.hybrid)
    publish(store, container, live.collection)
    filled = fill_collection(kb, store, container, live.collection, version.name, log=log)
    return CollectionReport(
        collection=live.collection,
        alias=alias_name(container.slug),
        generation=live.number,
        embedder_version=version.name,
        created=created,
        upserted=filled.upserted,
        deleted=filled.deleted,
        points=store.count(live.collection),
        index_seconds=filled.index_seconds,
    )


@dataclass(frozen=True)
class Filled:
    upserted: int
    deleted: int
    index_seconds: float | None  # the HNSW builds, None when nothing needed indexing


def fill_collection(
    kb: KnowledgeBase,
    store: VectorStore,
    container: Container,
    collection: str,
    embedder_version: str,
    overwrite: bool = False,
    verify: bool = False,
    log: logging.Logger = _log,
) -> Filled:
    """Make ``collection`` hold exactly the container's active chunks, vectors from the cache, and
    index it where that pays (its payload fields too: ``index_fields``).

    Upserts the points it lacks (every point with ``overwrite``; with ``verify``, also those whose
    payload or vector differs from the chunk and the cache) and those of the documents whose
    fields changed since the collection's were written, and deletes the ones no active chunk has.
    """
    index_fields(store, container, collection)
    revision = kb.fields_revision(container.id)  # read first: what changes during the fill waits for the next
    present = _sound_ids(kb, store, container, collection, embedder_version, log) if verify else store.id_array(collection)
    wanted, lacking_documents = np.zeros(len(present), dtype=bool), set()
    chunker = get_version(embedder_version).chunker
    for batch in kb.chunk_keys(container.id, chunker):
        found, at = locate(present, point_id_array(container.id, batch))
        wanted[at[found]] = True
        if not overwrite and len(present):
            lacking_documents.update(batch[i][0] for i in np.flatnonzero(~found))
    stale = present[~wanted]
    writer = CollectionWriter(store, collection, log)
    points = partial(kb.chunk_points, container.id, chunker, embedder_version)
    if overwrite or not len(present):
        _write_points(kb, writer, container, embedder_version, chunker, points())
    else:
        written = kb.collection_fields_revision(container.id, collection)
        if lacking_documents:
            _write_points(
                kb, writer, container, embedder_version, chunker, points(lacking_documents), skip=present,
                leave_fields_after=written,
            )
        _write_points(kb, writer, container, embedder_version, chunker, points(fields_after=written))
    if writer.written:
        log.info("%s: %d points written", collection, writer.written)
    if len(stale):
        store.delete(collection, id_strings(stale))
        log.info("%s: %d stale points deleted", collection, len(stale))
    kb.record_collection_fields(container.id, collection, revision)
    return Filled(writer.written, len(stale), writer.finish())


def build_index(store: VectorStore, collection: str, log: logging.Logger = _log) -> float | None:
    """Index what the store leaves unindexed (the embedded engine searches it by brute force);
    the seconds it took, None if nothing needed it."""
    started = time.perf_counter()
    if not store.build_index(collection):
        return None
    seconds = round(time.perf_counter() - started, 3)
    log.info("%s: index built in %.1f s", collection, seconds)
    return seconds


class CollectionWriter:
    """Upserts into one collection batch by batch, with progress lines, and indexes each
    segment's worth of points as it is written (``VectorStore.index_batch``), so no index build
    spans more than a segment, at any size; ``finish`` indexes the rest where that pays."""

    def __init__(self, store: VectorStore, collection: str, log: logging.Logger = _log):
        self.store, self.collection, self.log = store, collection, log
        self.written, self._unindexed, self._progress = 0, 0, Progress(log)
        self.index_seconds: float | None = None

    def upsert(self, ids, vectors: np.ndarray, payloads) -> None:
        self.store.upsert(self.collection, ids, vectors, payloads)
        self.written += len(ids)
        self._unindexed += len(ids)
        self._progress("%s: %d points written so far", self.collection, self.written)
        if self.store.index_batch and self._unindexed >= self.store.index_batch:
            self._index()

    def finish(self) -> float | None:
        """Index what is left where that pays; the seconds of every index build, None if none."""
        self._index()
        return self.index_seconds

    def _index(self) -> None:
        seconds = build_index(self.store, self.collection, self.log)
        self._unindexed = 0
        if seconds is not None:
            self.index_seconds = round((self.index_seconds or 0) + seconds, 3)


def _write_points(
    kb: KnowledgeBase,
    writer: CollectionWriter,
    container: Container,
    embedder_version: str,
    chunker: str,
    batches: Generator[list, None, None],
    skip: np.ndarray = EMPTY,
    leave_fields_after: int | None = None,
) -> None:
    """Upsert the points of the ``batches`` of ``kb.chunk_points`` whose id is not in ``skip``,
    but those of documents whose fields changed after ``leave_fields_after`` (another pass
    writes every point of those). The stream is closed here, whatever happens: one left open by a
    failed write would give its connection back only when collected, after the engine is gone."""
    with closing(batches):
        for batch in batches:
            rows = batch
            if len(skip):
                rows = [batch[i] for i in np.flatnonzero(~contains(skip, point_id_array(container.id, batch)))]
            if leave_fields_after is not None:
                rows = [row for row in rows if row.fields_revision <= leave_fields_after]
            if not rows:
                continue
            if any(row.vector is None for row in rows):
                raise _missing_embeddings(kb, container, embedder_version, chunker)
            chunks = [ChunkRow(*row[:7], fields=document_fields.loads(row.fields) or {}) for row in rows]
            vectors = np.frombuffer(b"".join(row.vector for row in rows), dtype="<f4").reshape(len(rows), -1)
            ids = id_strings(point_id_array(container.id, rows))
            writer.upsert(ids, vectors, [chunk_payload(container, c) for c in chunks])


def _missing_embeddings(kb: KnowledgeBase, container: Container, embedder_version: str, chunker: str) -> MissingEmbeddings:
    lacking = sum(len(page) for page in kb.chunk_texts(container.id, chunker, embedder_version))
    return MissingEmbeddings(
        f"{lacking} chunk(s) of {container.slug!r} have no {embedder_version} embedding in the cache; run the "
        "embeddings step for this container and version first",
        missing=lacking,
    )


def _sound_ids(
    kb: KnowledgeBase, store: VectorStore, container: Container, collection: str, embedder_version: str, log
) -> np.ndarray:
    """Ids of the points of ``collection`` whose payload gives back their id and whose vector is
    the cached one; the others count as absent, so they are rewritten."""
    parts, damaged = [], 0
    for page in store.pages(collection, with_payload=ID_FIELDS, with_vectors=True, page=1024):
        hashes = [p.get("chunk_hash") for p in page.payloads]
        cached = kb.get_embeddings(embedder_version, set(hashes), container.id)
        sound = point_id_array(container.id, [tuple(p.get(k) for k in ID_FIELDS) for p in page.payloads]) == page.ids
        for i, chunk in enumerate(hashes):
            vector = cached.get(chunk)
            sound[i] &= vector is not None and np.allclose(page.vectors[i], vector, atol=1e-4)
        parts.append(page.ids[sound])
        damaged += int((~sound).sum())
    if damaged:
        log.warning("%s: %d damaged points will be rewritten", collection, damaged)
    return id_set(parts)
