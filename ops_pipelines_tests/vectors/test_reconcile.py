"""Each reconciliation check passes on a faithful collection and fails on its own defect."""

from __future__ import annotations

import numpy as np
import pytest

from ops_pipelines.embedders.hashing import HashingEmbedder
from ops_pipelines.vectors import open_vector_store, point_id
from ops_pipelines.vectors.reconcile import (
    CollectionSnapshot,
    payload_hashes,
    point_count,
    point_ids,
    self_retrieval,
    vector_dimension,
    vector_values,
)

TEXTS = [f"chunk number {i} about topic{i} and subject{i * 7}" for i in range(30)] + ["same text"] * 2


@pytest.fixture
def world(tmp_path):
    embedder = HashingEmbedder(32)
    vectors = embedder.embed(TEXTS)
    hashes = [f"h{i}" if t != "same text" else "hsame" for i, t in enumerate(TEXTS)]
    ids = [point_id("c", "d", i, h) for i, h in enumerate(hashes)]
    expected = dict(zip(ids, hashes, strict=True))
    cache = dict(zip(hashes, vectors, strict=True))
    with open_vector_store(path=str(tmp_path / "q")) as store:
        store.ensure_collection("g1", 32)
        store.upsert("g1", ids, vectors, [{"chunk_hash": h} for h in hashes])
        yield store, expected, cache, ids


def run_all(store, expected, cache, dimension=32):
    snap = CollectionSnapshot.read(store, "g1")

    def top_id(vector):
        hits = store.search("g1", vector, limit=1)
        return hits[0].id if hits else None

    results = [
        point_count(expected, snap),
        point_ids(expected, snap),
        vector_dimension(dimension, snap),
        vector_values(snap),
        payload_hashes(expected, snap),
        self_retrieval(expected, top_id, cache.get, sample_size=32),
    ]
    return {r.name: r for r in results}


def failing(results):
    return sorted(name for name, r in results.items() if not r.passed)


def test_a_faithful_collection_passes_everything(world):
    store, expected, cache, _ = world
    results = run_all(store, expected, cache)
    assert failing(results) == []
    assert results["self_retrieval"].details["sampled"] == 32  # the duplicate text counts as found


def test_a_dropped_point(world):
    store, expected, cache, ids = world
    store.delete("g1", [ids[3]])
    results = run_all(store, expected, cache)
    assert failing(results) == ["point_count", "point_ids", "self_retrieval"]
    assert results["point_ids"].details["missing_sample"] == [ids[3]]


def test_an_extra_point(world):
    store, expected, cache, _ = world
    stray = point_id("c", "gone", 0, "hx")
    store.upsert("g1", [stray], np.ones((1, 32), dtype=np.float32), [{"chunk_hash": "hx"}])
    results = run_all(store, expected, cache)
    assert failing(results) == ["point_count", "point_ids"]
    assert results["point_ids"].details["extra_sample"] == [stray]


def test_a_corrupted_vector(world):
    store, expected, cache, ids = world
    store.upsert("g1", [ids[5]], np.zeros((1, 32), dtype=np.float32), [{"chunk_hash": expected[ids[5]]}])
    results = run_all(store, expected, cache)
    assert "vector_values" in failing(results)
    assert results["vector_values"].details == {"nan": 0, "zero_norm": 1, "sample": [ids[5]]}


def test_nan_vectors_are_caught():
    # Qdrant local mode refuses NaN on upsert, Edge and a server may not: check the function directly.
    vectors = np.ones((3, 4), dtype=np.float32)
    vectors[1, 2] = np.nan
    snap = CollectionSnapshot("g1", 4, ["a", "b", "c"], ["h"] * 3, vectors)
    result = vector_values(snap)
    assert not result.passed and result.details == {"nan": 1, "zero_norm": 0, "sample": ["b"]}


def test_a_stale_payload(world):
    store, expected, cache, ids = world
    (point,) = store.retrieve("g1", [ids[7]], with_vectors=True)
    store.upsert("g1", [ids[7]], point.vector[None], [{"chunk_hash": "old"}])
    results = run_all(store, expected, cache)
    assert failing(results) == ["payload_hashes"]
    assert results["payload_hashes"].details["sample"] == [ids[7]]


def test_a_wrong_dimension(world):
    store, expected, cache, _ = world
    results = run_all(store, expected, cache, dimension=64)
    assert failing(results) == ["vector_dimension"]
    assert results["vector_dimension"].summary == "collection is 32-d, the embedder makes 64-d"
