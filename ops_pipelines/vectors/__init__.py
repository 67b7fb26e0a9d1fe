"""Qdrant: collection generations, the live alias, idempotent point writes. No Dagster imports."""

from ops_pipelines.vectors.store import (
    DimensionMismatch,
    Hit,
    VectorStore,
    VectorStoreBusy,
    alias_name,
    generation_name,
    open_vector_store,
    point_id,
)

__all__ = [
    "DimensionMismatch",
    "Hit",
    "VectorStore",
    "VectorStoreBusy",
    "alias_name",
    "generation_name",
    "open_vector_store",
    "point_id",
]
