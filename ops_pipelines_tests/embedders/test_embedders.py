from __future__ import annotations

import numpy as np
import pytest

from ops_pipelines.embedders import load_embedder
from ops_pipelines.embedders.hashing import HashingEmbedder


def test_hashing_embedder_is_deterministic_normalised_and_lexical():
    embedder = HashingEmbedder(256)
    texts = ["apples and orchards", "glaciers and ice", "apples and orchards", "!!!"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (4, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], HashingEmbedder(256).embed(["apples and orchards"])[0])
    query = embedder.embed(["orchards of apples"])[0]
    assert query @ vectors[0] > query @ vectors[1]


def test_an_embedder_is_loaded_once_per_process():
    assert load_embedder("hash-256@1") is load_embedder("hash-256@1")


@pytest.mark.minilm
def test_minilm_is_the_real_model_loaded_offline():
    embedder = load_embedder("minilm-l6-v2@1")
    vectors = embedder.embed(
        ["How do I undo a bad deployment?", "Rolling back a release to the previous version", "Bananas are yellow fruit"]
    )
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # Semantic, not lexical: the paraphrase shares almost no words with the question.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
