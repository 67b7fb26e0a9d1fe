"""The incremental sync, step by step, in plain Python (the Dagster assets call these)."""

from ops_pipelines.ingest.chunks import ChunkReport, chunk_documents
from ops_pipelines.ingest.collection import (
    CollectionReport,
    MissingEmbeddings,
    expected_points,
    fill_collection,
    load_generation,
    sync_collection,
)
from ops_pipelines.ingest.documents import ArchiveRefused, DocumentSyncReport, sync_documents
from ops_pipelines.ingest.embeddings import BadVectors, EmbedReport, embed_chunks

__all__ = [
    "ArchiveRefused",
    "BadVectors",
    "ChunkReport",
    "CollectionReport",
    "DocumentSyncReport",
    "EmbedReport",
    "MissingEmbeddings",
    "chunk_documents",
    "embed_chunks",
    "expected_points",
    "fill_collection",
    "load_generation",
    "sync_collection",
    "sync_documents",
]
