"""Step 4 of sync: make the container's live collection hold exactly its active chunks.

Reconciles by point id (deterministic from container, document, ordinal and chunk hash): ids
that should exist and do not are upserted from the embedding cache, ids that should not exist
are deleted. Whatever happened before (a run killed after the DB write, a partial upsert), the
next run converges, and a re-run with nothing to do writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ops_pipelines.embedders import get_version
from ops_pipelines.kb import ChunkRow, Container, KnowledgeBase
from ops_pipelines.kb.generations import LIVE
from ops_pipelines.vectors import VectorStore, alias_name, generation_name, point_id
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


def expected_points(kb: KnowledgeBase, container: Container) -> dict[str, ChunkRow]:
    """Point id -> chunk, for every active chunk: what the container's collection must hold."""
    return {
        point_id(container.id, row.document_id, row.ordinal, row.content_hash): row
        for row in kb.active_chunks(container.id)
    }


def sync_collection(
    kb: KnowledgeBase,
    store: VectorStore,
    container: Container,
    batch_size: int = 256,
    log: logging.Logger = _log,
) -> CollectionReport:
    """Bring the live generation (created as generation 1 on a first sync) up to date."""
    live = kb.live_generation(container.id)
    if live is None:
        first = get_version(container.embedder_version).name
        live, _ = kb.open_generation(
            container.id, first, lambda n: generation_name(container.slug, first, n), state=LIVE
        )
    version = get_version(live.embedder_version)
    alias = alias_name(container.slug)
    created = store.ensure_collection(live.collection, version.dimension)
    publish(store, container, live.collection)
    upserted, deleted = fill_collection(kb, store, container, live.collection, version.name, batch_size=batch_size, log=log)
    return CollectionReport(
        collection=live.collection,
        alias=alias,
        generation=live.number,
        embedder_version=version.name,
        created=created,
        upserted=upserted,
        deleted=deleted,
        points=store.count(live.collection),
    )


def fill_collection(
    kb: KnowledgeBase,
    store: VectorStore,
    container: Container,
    collection: str,
    embedder_version: str,
    overwrite: bool = False,
    verify: bool = False,
    batch_size: int = 256,
    log: logging.Logger = _log,
) -> tuple[int, int]:
    """Make ``collection`` hold exactly the container's active chunks, vectors from the cache.

    Upserts the points it lacks (every point with ``overwrite``; with ``verify``, also those whose
    payload hash or vector differs from the chunk and the cache) and deletes the ones no active
    chunk has; returns (upserted, deleted).
    """
    wanted = expected_points(kb, container)
    if verify:
        present, damaged = _sound_points(kb, store, collection, wanted, embedder_version)
        if damaged:
            log.warning("%s: %d damaged points will be rewritten", collection, damaged)
    else:
        present = store.point_ids(collection)
    to_upsert = list(wanted) if overwrite else [pid for pid in wanted if pid not in present]
    to_delete = sorted(present - wanted.keys())

    for start in range(0, len(to_upsert), batch_size):
        ids = to_upsert[start : start + batch_size]
        rows = [wanted[pid] for pid in ids]
        vectors = _cached_vectors(kb, container, embedder_version, rows)
        store.upsert(collection, ids, vectors, [chunk_payload(container, r) for r in rows])
        log.info("%s: %d/%d points upserted", collection, start + len(ids), len(to_upsert))
    if to_delete:
        store.delete(collection, to_delete)
        log.info("%s: %d stale points deleted", collection, len(to_delete))
    return len(to_upsert), len(to_delete)


def _cached_vectors(kb: KnowledgeBase, container: Container, embedder_version: str, rows: list[ChunkRow]) -> np.ndarray:
    cached = kb.get_embeddings(embedder_version, [r.content_hash for r in rows])
    lacking = [r.content_hash for r in rows if r.content_hash not in cached]
    if lacking:
        raise MissingEmbeddings(
            f"{len(lacking)} chunk(s) of {container.slug!r} have no {embedder_version} embedding "
            "in the cache; run the embeddings step for this container and version first"
        )
    return np.stack([cached[r.content_hash] for r in rows])


def _sound_points(
    kb: KnowledgeBase, store: VectorStore, collection: str, wanted: dict[str, ChunkRow], embedder_version: str
) -> tuple[set[str], int]:
    """Ids present in ``collection``, minus wanted points whose payload hash or vector is wrong
    (those count as absent, so they are rewritten); and how many were wrong."""
    present: set[str] = set()
    damaged = 0
    page: list = []

    def check(points) -> None:
        nonlocal damaged
        hashes = {wanted[str(p.id)].content_hash for p in points if str(p.id) in wanted}
        cached = kb.get_embeddings(embedder_version, hashes)
        for p in points:
            pid = str(p.id)
            row = wanted.get(pid)
            if row is not None:
                vector = cached.get(row.content_hash)
                sound = (
                    (p.payload or {}).get("chunk_hash") == row.content_hash
                    and vector is not None
                    and np.allclose(np.asarray(p.vector, dtype=np.float32), vector, atol=1e-4)
                )
                if not sound:
                    damaged += 1
                    continue
            present.add(pid)

    for point in store.scroll(collection, with_payload=["chunk_hash"], with_vectors=True):
        page.append(point)
        if len(page) == 1024:
            check(page)
            page = []
    check(page)
    return present, damaged
