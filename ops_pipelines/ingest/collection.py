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
from ops_pipelines.vectors import VectorStore, alias_name, generation_name, point_id

_log = logging.getLogger(__name__)


class MissingEmbeddings(RuntimeError):
    pass


@dataclass
class CollectionReport:
    collection: str
    alias: str
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
    version = get_version(container.embedder_version)
    generation = container.active_generation or 1
    collection = generation_name(container.slug, version.name, generation)
    alias = alias_name(container.slug)
    created = store.ensure_collection(collection, version.dimension)
    if store.resolve_alias(alias) != collection:
        store.point_alias(alias, collection)
    if container.active_generation is None:
        kb.set_active_generation(container.id, generation)

    wanted = expected_points(kb, container)
    present = store.point_ids(collection)
    to_upsert = [pid for pid in wanted if pid not in present]
    to_delete = sorted(present - wanted.keys())

    for start in range(0, len(to_upsert), batch_size):
        ids = to_upsert[start : start + batch_size]
        rows = [wanted[pid] for pid in ids]
        cached = kb.get_embeddings(version.name, [r.content_hash for r in rows])
        lacking = [r.content_hash for r in rows if r.content_hash not in cached]
        if lacking:
            raise MissingEmbeddings(
                f"{len(lacking)} chunk(s) of {container.slug!r} have no {version.name} embedding "
                "in the cache; materialize `embeddings` for this container first"
            )
        vectors = np.stack([cached[r.content_hash] for r in rows])
        store.upsert(collection, ids, vectors, [chunk_payload(container, r) for r in rows])
        log.info("collection: %d/%d points upserted", start + len(ids), len(to_upsert))
    if to_delete:
        store.delete(collection, to_delete)
        log.info("collection: %d stale points deleted", len(to_delete))
    return CollectionReport(
        collection=collection,
        alias=alias,
        created=created,
        upserted=len(to_upsert),
        deleted=len(to_delete),
        points=store.count(collection),
    )
