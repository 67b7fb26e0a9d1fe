"""Hybrid search: a BM25 sparse vector beside the dense one, fused by reciprocal rank.

The sparse vectors are Qdrant's own BM25 (``qdrant_edge.Bm25``: tokenized, stop words dropped,
stemmed, each term hashed to an index and weighted by its saturated frequency), the same on both
backends; the collection applies the IDF (``Modifier.Idf``), so the weights of terms follow the
collection as it changes. They are a function of a point's text alone: a hybrid collection
computes them as points are written, so every way a collection is written (sync, shadow build,
import, restore) fills them without carrying them. A hybrid search fuses the dense and the
sparse candidates with reciprocal rank fusion: a point's score is the sum over both lists of
``1 / (RRF_K + rank)``, so a query whose words are in no document scores at most one list's share.
"""

from __future__ import annotations

import threading

SPARSE = "bm25"  # the sparse vector's name in every hybrid collection
RRF_K = 60  # the usual constant of reciprocal rank fusion (Cormack et al.)
_local = threading.local()


def _model():
    model = getattr(_local, "bm25", None)
    if model is None:
        import qdrant_edge

        model = _local.bm25 = qdrant_edge.Bm25()
    return model


def document_terms(text: str) -> tuple[list[int], list[float]]:
    """The BM25 document vector of ``text``: term indices and weights."""
    vector = _model().embed_document(text or "")
    return list(vector.indices), list(vector.values)


def query_terms(text: str) -> tuple[list[int], list[float]]:
    """The BM25 query vector of ``text`` (each term once, weight 1): empty when no word counts."""
    vector = _model().embed_query(text or "")
    return list(vector.indices), list(vector.values)


def prefetch_limit(limit: int) -> int:
    """Candidates each list brings to the fusion."""
    return max(2 * limit, 20)
