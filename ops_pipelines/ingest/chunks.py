"""Step 2 of sync: cut new and changed documents into chunks, under each chunker the container
needs: its live version's (what sync keeps up to date) and its target version's, if another."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ops_pipelines.chunking import Chunker, chunk_hash
from ops_pipelines.embedders import chunker_of, get_version
from ops_pipelines.kb import Container, KnowledgeBase
from ops_pipelines.progress import Progress

_log = logging.getLogger(__name__)


@dataclass
class ChunkReport:
    chunker: str
    documents_chunked: int
    chunks_written: int
    active_chunks: int


def serving_version(kb: KnowledgeBase, container: Container) -> str:
    """The embedder version of the live generation, or, before the first sync, the container's."""
    live = kb.live_generation(container.id)
    return live.embedder_version if live else container.embedder_version


def serving_chunker(kb: KnowledgeBase, container: Container) -> str:
    """The name of the chunker whose chunks the live generation holds (or will, before the first sync)."""
    return get_version(serving_version(kb, container)).chunker


def needed_chunkers(kb: KnowledgeBase, container: Container) -> list[Chunker]:
    """The chunkers a sync keeps the chunks of: the live version's, then the container's target
    version's if it differs."""
    names = dict.fromkeys([serving_version(kb, container), container.embedder_version])
    return list({c.name: c for c in map(chunker_of, names)}.values())


def chunk_documents(
    kb: KnowledgeBase, container: Container, chunker: Chunker | None = None, batch_size: int = 200,
    log: logging.Logger = _log,
) -> ChunkReport:
    """Chunk the documents whose chunks under ``chunker`` (default: the container's embedder
    version's) are missing or stale, a page at a time."""
    chunker = chunker or chunker_of(container.embedder_version)
    progress = Progress(log)
    documents = written = 0
    for page in kb.documents_to_chunk(container.id, chunker.name, batch_size):
        batch = []
        for doc_id, doc_hash, text in page:
            pieces = [(chunk_hash(t, chunker.name), t) for t in chunker.cut(text)]
            written += len(pieces)
            batch.append((doc_id, doc_hash, pieces))
        kb.replace_chunks(chunker.name, batch)
        documents += len(page)
        progress("chunks: %d documents chunked by %s so far", documents, chunker.name)
    if documents:
        log.info("chunks: %d documents chunked by %s, %d chunks written", documents, chunker.name, written)
    return ChunkReport(chunker.name, documents, written, kb.count_active_chunks(container.id, chunker.name))
