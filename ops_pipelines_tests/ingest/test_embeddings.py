"""A broken embedder is stopped before anything it made reaches the cache."""

from __future__ import annotations

import numpy as np
import pytest

from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.ingest import BadVectors, chunk_documents, embed_chunks
from ops_pipelines.kb import DocumentWrite


class BrokenEmbedder:
    dimension = 4

    def __init__(self, make):
        self.make = make

    def embed(self, texts):
        return self.make(len(texts))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda n: np.ones((n, 3), dtype=np.float32), r"shape \(2, 3\), expected \(2, 4\)"),
        (lambda n: np.full((n, 4), np.nan, dtype=np.float32), "NaN"),
        (lambda n: np.zeros((n, 4), dtype=np.float32), "zero vector"),
    ],
)
def test_bad_vectors_are_refused_and_not_cached(kb, make, message, tmp_path, monkeypatch):
    registry = tmp_path / "embedders.toml"
    registry.write_text('[versions."broken@1"]\nprovider = "hashing"\ndimension = 4\n')
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(registry))
    container = kb.add_container("docs", "folder", "/x", "hash-256@1")
    kb.write_documents(
        container.id,
        [
            DocumentWrite(f"{i}.md", "t", "u", "r" * 64, f"s{i}", f"c{i}", f"text {i}", None)
            for i in range(2)
        ],
        {},
    )
    chunk_documents(kb, container)
    with pytest.raises(BadVectors, match=message):
        embed_chunks(kb, container, lambda _: BrokenEmbedder(make), "broken@1")
    assert sum(len(page) for page in kb.chunk_texts(container.id, PARA, "broken@1")) == 2


def test_nothing_missing_means_no_model_load(kb):
    container = kb.add_container("docs", "folder", "/x", "hash-256@1")

    def never(_):
        raise AssertionError("model loaded with nothing to embed")

    report = embed_chunks(kb, container, never, "hash-256@1")
    assert (report.computed, report.active_chunks) == (0, 0)
