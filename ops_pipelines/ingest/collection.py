"""Step 4 of sync: make the container's live collection hold exactly its active chunks.

Reconciles by point id (deterministic from container, document, ordinal and chunk hash): ids
that should exist and do not are upserted from the embedding cache, ids that should not exist
are deleted. Whatever happened before (a run killed after the DB write, a partial upsert), the
next run converges, and a re-run with nothing to do writes nothing.

Memory stays flat at any size: ids are compared as sorted id arrays (``vectors.ids``), and the
text and vectors of a point are read, batch by batch, only for the points being written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ops_pipelines.embedders import get_version
from ops_pipelines.kb import ChunkRow, Container, KnowledgeBase
from ops_pipelines.kb.generations import LIVE
from ops_pipelines.progress import Progress
from ops_pipelines.vectors import VectorStore, alias_name, generation_name
from ops_pipelines.vectors.ids import EMPTY, contains, id_set, id_strings, point_id_array
from ops_pipelines.vectors.reconcile import ID_FIELDS
from ops_pipelines.vectors.serving import publish

_log = logging.getLogger(__name__)


class MissingEmbeddings(RuntimeError):
    pass


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
    }


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
    created = store.ensure_collection(live.collection, version.dimension)
    publish(store, container, live.collection)
    upserted, deleted = fill_collection(kb, store, container, live.collection, version.name, log=log)
    return CollectionReport(
        collection=live.collection,
        alias=alias_name(container.slug),
        generation=live.number,
        embedder_version=version.name,
        created=created,
        upserted=upserted,
        deleted=deleted,
        points=store.count(live.collection),
        index_seconds=build_index(store, live.collection, log),
    )


def fill_collection(
    kb: KnowledgeBase,
    store: VectorStore,
    container: Container,
    collection: str,
    embedder_version: str,
    overwrite: bool = False,
    verify: bool = False,
    log: logging.Logger = _log,
) -> tuple[int, int]:
    """Make ``collection`` hold exactly the container's active chunks, vectors from the cache.

    Upserts the points it lacks (every point with ``overwrite``; with ``verify``, also those whose
    payload or vector differs from the chunk and the cache) and deletes the ones no active chunk
    has; returns (upserted, deleted).
    """
    present = _sound_ids(kb, store, container, collection, embedder_version, log) if verify else store.id_array(collection)
    wanted_parts, lacking_documents = [], set()
    for batch in kb.chunk_keys(container.id):
        ids = point_id_array(container.id, batch)
        wanted_parts.append(ids)
        if not overwrite and len(present):
            lacking_documents.update(batch[i][0] for i in np.flatnonzero(~contains(present, ids)))
    stale = np.setdiff1d(present, id_set(wanted_parts), assume_unique=True)
    del wanted_parts
    everything = overwrite or not len(present)
    upserted = _write_points(
        kb, store, container, collection, embedder_version,
        documents=None if everything else lacking_documents, skip=EMPTY if overwrite else present, log=log,
    )
    if len(stale):
        store.delete(collection, id_strings(stale))
        log.info("%s: %d stale points deleted", collection, len(stale))
    return upserted, len(stale)


def build_index(store: VectorStore, collection: str, log: logging.Logger = _log) -> float | None:
    """Index what the store leaves unindexed (the embedded engine searches it by brute force);
    the seconds it took, None if nothing needed it."""
    started = time.perf_counter()
    if not store.build_index(collection):
        return None
    seconds = round(time.perf_counter() - started, 3)
    log.info("%s: index built in %.1f s", collection, seconds)
    return seconds


def _write_points(
    kb: KnowledgeBase,
    store: VectorStore,
    container: Container,
    collection: str,
    embedder_version: str,
    documents: set[str] | None,
    skip: np.ndarray,
    log: logging.Logger,
) -> int:
    """Upsert the points of the active chunks (of ``documents`` only, if given) whose id is not in
    ``skip``, batch by batch; returns how many."""
    written, progress = 0, Progress(log)
    if documents is not None and not documents:
        return 0
    for batch in kb.chunk_points(container.id, embedder_version, documents):
        rows = [batch[i] for i in np.flatnonzero(~contains(skip, point_id_array(container.id, batch)))] if len(skip) else batch
        if not rows:
            continue
        if any(row.vector is None for row in rows):
            raise _missing_embeddings(kb, container, embedder_version)
        chunks = [ChunkRow(*row[:7]) for row in rows]
        vectors = np.frombuffer(b"".join(row.vector for row in rows), dtype="<f4").reshape(len(rows), -1)
        ids = id_strings(point_id_array(container.id, rows))
        store.upsert(collection, ids, vectors, [chunk_payload(container, c) for c in chunks])
        written += len(rows)
        progress("%s: %d points written so far", collection, written)
    if written:
        log.info("%s: %d points written", collection, written)
    return written


def _missing_embeddings(kb: KnowledgeBase, container: Container, embedder_version: str) -> MissingEmbeddings:
    lacking = sum(len(page) for page in kb.chunk_texts(container.id, embedder_version))
    return MissingEmbeddings(
        f"{lacking} chunk(s) of {container.slug!r} have no {embedder_version} embedding in the cache; run the "
        "embeddings step for this container and version first"
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
