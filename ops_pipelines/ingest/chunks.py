"""Step 2 of sync: cut new and changed documents into chunks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ops_pipelines.chunking import chunk_hash, chunk_text
from ops_pipelines.kb import Container, KnowledgeBase
from ops_pipelines.progress import Progress

_log = logging.getLogger(__name__)


@dataclass
class ChunkReport:
    documents_chunked: int
    chunks_written: int
    active_chunks: int


def chunk_documents(
    kb: KnowledgeBase, container: Container, batch_size: int = 200, log: logging.Logger = _log
) -> ChunkReport:
    """Chunk the documents whose chunks are missing or stale, a page at a time."""
    progress = Progress(log)
    documents = written = 0
    for page in kb.documents_to_chunk(container.id, batch_size):
        batch = []
        for doc_id, doc_hash, text in page:
            pieces = [(chunk_hash(t), t) for t in chunk_text(text)]
            written += len(pieces)
            batch.append((doc_id, doc_hash, pieces))
        kb.replace_chunks(batch)
        documents += len(page)
        progress("chunks: %d documents chunked so far", documents)
    if documents:
        log.info("chunks: %d documents chunked, %d chunks written", documents, written)
    return ChunkReport(documents, written, kb.count_active_chunks(container.id))
