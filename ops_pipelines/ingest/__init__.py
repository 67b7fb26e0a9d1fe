"""The incremental sync, step by step, in plain Python (the Dagster assets call these)."""

from ops_pipelines.ingest.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerPolicy,
    SourceCircuitOpen,
    breaker_status,
    open_message,
    source_breaker,
)
from ops_pipelines.ingest.chunks import ChunkReport, chunk_documents, needed_chunkers, serving_chunker
from ops_pipelines.ingest.collection import (
    CollectionReport,
    CollectionWriter,
    MissingEmbeddings,
    build_index,
    fill_collection,
    index_fields,
    sync_collection,
)
from ops_pipelines.ingest.documents import MODES, ArchiveRefused, DocumentSyncReport, choose_mode, sync_documents
from ops_pipelines.ingest.embeddings import BadVectors, EmbedReport, embed_chunks
from ops_pipelines.ingest.expected import ExpectedPoints, expected_points

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "MODES",
    "OPEN",
    "ArchiveRefused",
    "BadVectors",
    "BreakerPolicy",
    "ChunkReport",
    "CollectionReport",
    "CollectionWriter",
    "DocumentSyncReport",
    "EmbedReport",
    "ExpectedPoints",
    "MissingEmbeddings",
    "SourceCircuitOpen",
    "breaker_status",
    "build_index",
    "choose_mode",
    "chunk_documents",
    "embed_chunks",
    "expected_points",
    "fill_collection",
    "index_fields",
    "needed_chunkers",
    "open_message",
    "serving_chunker",
    "source_breaker",
    "sync_collection",
    "sync_documents",
]
