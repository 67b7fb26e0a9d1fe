"""Step 2 of sync: cut new and changed documents into chunks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ops_pipelines.chunking import chunk_hash, chunk_text
from ops_pipelines.kb import Container, KnowledgeBase

_log = logging.getLogger(__name__)


@dataclass
class ChunkReport:
    documents_chunked: int
    chunks_written: int
    active_chunks: int


def chunk_documents(
    kb: KnowledgeBase, container: Container, batch_size: int = 200, log: logging.Logger = _log
) -> ChunkReport:
    todo = kb.documents_to_chunk(container.id)
    written = 0
    for start in range(0, len(todo), batch_size):
        batch = []
        for doc_id, doc_hash, text in todo[start : start + batch_size]:
            pieces = [(chunk_hash(t), t) for t in chunk_text(text)]
            written += len(pieces)
            batch.append((doc_id, doc_hash, pieces))
        kb.replace_chunks(batch)
        log.info("chunks: %d/%d documents chunked", min(start + batch_size, len(todo)), len(todo))
    return ChunkReport(len(todo), written, kb.count_active_chunks(container.id))
