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


def _reference_vector(text: str, dimension: int) -> np.ndarray:
    """The hashing embedder's definition, one feature at a time."""
    import hashlib
    import re

    vector = np.zeros(dimension, dtype=np.float32)
    for feature in [*re.findall(r"\w+", text.lower()), "\0" + text]:
        h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
        vector[h % dimension] += 1.0 if h >> 63 else -1.0
    return vector / (np.linalg.norm(vector) or 1)


def test_hashing_embedder_batches_equal_its_definition_and_remember_only_words():
    rng = np.random.default_rng(3)
    words = ["alpha", "Beta", "gamma", "délta", "x1", "_y", "!!", ",", "alpha"]
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 30))) for _ in range(200)] + ["", "  ", "!?"]
    embedder = HashingEmbedder(64)
    vectors = np.concatenate([embedder.embed(texts[s : s + 64]) for s in range(0, len(texts), 64)])
    assert vectors.shape == (len(texts), 64) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, np.array([_reference_vector(t, 64) for t in texts]))
    # Words are remembered, whole texts are not: memory stays flat however many texts it embeds.
    assert len(embedder._cells) == len({w.lower() for w in words if w.strip("!,")})
    assert embedder.embed([]).shape == (0, 64)


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
