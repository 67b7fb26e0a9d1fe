"""Qdrant: collection generations behind a live alias, idempotent point writes, search. One
``VectorStore`` contract, two backends: Qdrant Edge embedded (``OPS_QDRANT_PATH``, the default)
and a Qdrant server through qdrant-client (``OPS_QDRANT_URL``). No Dagster imports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ops_pipelines.errors import VectorStoreBusy
from ops_pipelines.vectors.base import (
    CollectionNotFound,
    DimensionMismatch,
    Hit,
    StoredPoint,
    VectorStore,
    alias_name,
    generation_name,
    point_id,
    point_uuid,
)
from ops_pipelines.vectors.edge import EdgeVectorStore, LegacyVectorFolder

__all__ = [
    "CollectionNotFound",
    "DimensionMismatch",
    "EdgeVectorStore",
    "Hit",
    "LegacyVectorFolder",
    "StoredPoint",
    "VectorStore",
    "VectorStoreBusy",
    "alias_name",
    "generation_name",
    "open_vector_store",
    "point_id",
    "point_uuid",
]


@contextmanager
def open_vector_store(
    url: str | None = None, api_key: str | None = None, path: str | None = None, wait_seconds: float = 120.0
) -> Iterator[VectorStore]:
    """A Qdrant server at ``url``, else Qdrant Edge in folder ``path``; closed on exit."""
    if url:
        from ops_pipelines.vectors.server import QdrantServerStore  # qdrant-client: imported only for a server

        store: VectorStore = QdrantServerStore.connect(url, api_key)
    elif path:
        store = EdgeVectorStore(path, wait_seconds)
    else:
        raise ValueError("the vector store needs a Qdrant URL (OPS_QDRANT_URL) or a folder (OPS_QDRANT_PATH)")
    try:
        yield store
    finally:
        store.close()
