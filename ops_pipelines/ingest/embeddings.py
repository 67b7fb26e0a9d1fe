"""Step 3 of sync: embed the chunk texts the cache does not have yet for the embedder version."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ops_pipelines.embedders import Embedder, get_version
from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import Container, KnowledgeBase
from ops_pipelines.progress import Progress

_log = logging.getLogger(__name__)


class BadVectors(OperatorError, ValueError):
    pass


@dataclass
class EmbedReport:
    embedder_version: str
    active_chunks: int
    computed: int
    seconds: float
    over_window: int | None = None  # of the computed chunks, how many the model read only in part

    @property
    def cached(self) -> int:
        return self.active_chunks - self.computed


def embed_chunks(
    kb: KnowledgeBase,
    container: Container,
    load_embedder: Callable[[str], Embedder],
    embedder_version: str,
    batch_size: int = 256,
    recompute: bool = False,
    log: logging.Logger = _log,
) -> EmbedReport:
    """Embed what the cache lacks (everything, overwriting the cache, with ``recompute``), a page
    of chunks at a time; the model is loaded only if something is to be computed."""
    embedder = None
    chunker = get_version(embedder_version).chunker
    computed, started, progress = 0, time.perf_counter(), Progress(log)
    over_window: int | None = None
    for page in kb.chunk_texts(container.id, chunker, None if recompute else embedder_version):
        if embedder is None:
            loading = time.perf_counter()
            embedder = load_embedder(embedder_version)
            log.info("embeddings: %s ready in %.1fs", embedder_version, time.perf_counter() - loading)
            started = time.perf_counter()
        vectors = []
        for start in range(0, len(page), batch_size):
            batch = page[start : start + batch_size]
            vectors.append(embedder.embed([text for _, text in batch]))
            _validate(vectors[-1], len(batch), embedder.dimension, embedder_version)
        # One write a page: a commit per model batch cost more than the hashing embedder's work.
        kb.put_embeddings(embedder_version, [h for h, _ in page], np.concatenate(vectors), replace=recompute)
        computed += len(page)
        over = getattr(embedder, "over_window", lambda texts: None)([text for _, text in page])
        over_window = over if over_window is None else over_window + (over or 0)
        progress("embeddings: %d computed so far (%.1f chunks/s)", computed, computed / max(time.perf_counter() - started, 1e-9))
    seconds = time.perf_counter() - started
    if computed:
        log.info("embeddings: %d computed in %.1f s (%.1f chunks/s)", computed, seconds, computed / max(seconds, 1e-9))
    if over_window:
        log.warning(
            "embeddings: %d of the %d chunks computed are longer than %s reads: their ends are not embedded. "
            "A version with a token chunker cuts chunks that fit (docs/embedders.md)",
            over_window, computed, embedder_version,
        )
    return EmbedReport(
        embedder_version=embedder_version,
        active_chunks=kb.count_active_chunks(container.id, chunker),
        computed=computed,
        seconds=seconds if computed else 0.0,
        over_window=over_window,
    )


def _validate(vectors: np.ndarray, rows: int, dimension: int, version: str) -> None:
    if vectors.shape != (rows, dimension):
        raise BadVectors(f"{version} returned shape {vectors.shape}, expected ({rows}, {dimension})")
    if not np.isfinite(vectors).all():
        raise BadVectors(f"{version} returned NaN or infinite values")
    if (np.linalg.norm(vectors, axis=1) == 0).any():
        raise BadVectors(f"{version} returned a zero vector")
