"""Each reconciliation check passes on a faithful collection and fails on its own defect."""

from __future__ import annotations

import numpy as np
import pytest

from ops_pipelines.embedders.hashing import HashingEmbedder
from ops_pipelines.vectors import open_vector_store, point_id
from ops_pipelines.vectors.ids import id_bytes, id_set
from ops_pipelines.vectors.reconcile import ID_FIELDS, ContentScan, self_retrieval

TEXTS = [f"chunk number {i} about topic{i} and subject{i * 7}" for i in range(30)] + ["same text"] * 2
CONTAINER = "c"


def payload(i: int, chunk: str) -> dict:
    return {"document_id": "d", "ordinal": i, "chunk_hash": chunk}


@pytest.fixture
def world(tmp_path):
    embedder = HashingEmbedder(32)
    vectors = embedder.embed(TEXTS)
    hashes = [f"h{i}" if t != "same text" else "hsame" for i, t in enumerate(TEXTS)]
    ids = [point_id(CONTAINER, "d", i, h) for i, h in enumerate(hashes)]
    sample = tuple(zip(ids, hashes, strict=True))
    cache = dict(zip(hashes, vectors, strict=True))
    with open_vector_store(path=str(tmp_path / "q")) as store:
        store.ensure_collection("g1", 32)
        store.upsert("g1", ids, vectors, [payload(i, h) for i, h in enumerate(hashes)])
        yield store, id_set([id_bytes(ids)]), sample, cache, ids


def run_all(store, expected, sample, cache, dimension=32, page=7):
    scan = ContentScan(CONTAINER, expected, dimension, store.collection_dimension("g1"))
    scan.add_pages(store.pages("g1", with_payload=ID_FIELDS, with_vectors=True, page=page))

    def top(vector):
        hits = store.search("g1", vector, limit=1)
        return hits[0] if hits else None

    results = [*scan.results(), self_retrieval(sample, top, cache.get)]
    return {r.name: r for r in results}


def failing(results):
    return sorted(name for name, r in results.items() if not r.passed)


def test_a_faithful_collection_passes_everything(world):
    store, expected, sample, cache, _ = world
    results = run_all(store, expected, sample, cache)
    assert failing(results) == []
    assert results["self_retrieval"].details["sampled"] == 32  # the duplicate text counts as found
    assert results["point_count"].details == {"points": 32, "active_chunks": 32}


def test_a_dropped_point(world):
    store, expected, sample, cache, ids = world
    store.delete("g1", [ids[3]])
    results = run_all(store, expected, sample, cache)
    assert failing(results) == ["point_count", "point_ids", "self_retrieval"]
    assert results["point_ids"].details["missing_sample"] == [ids[3]]


def test_an_extra_point(world):
    store, expected, sample, cache, _ = world
    stray = point_id(CONTAINER, "gone", 0, "hx")
    store.upsert("g1", [stray], np.ones((1, 32), dtype=np.float32), [{"document_id": "gone", "ordinal": 0, "chunk_hash": "hx"}])
    results = run_all(store, expected, sample, cache)
    assert failing(results) == ["point_count", "point_ids"]
    assert results["point_ids"].details["extra_sample"] == [stray]


def test_a_corrupted_vector(world):
    store, expected, sample, cache, ids = world
    store.upsert("g1", [ids[5]], np.zeros((1, 32), dtype=np.float32), [payload(5, "h5")])
    results = run_all(store, expected, sample, cache)
    assert "vector_values" in failing(results)
    assert results["vector_values"].details == {"nan": 0, "zero_norm": 1, "sample": [ids[5]]}


def test_nan_vectors_and_repeated_ids_are_caught():
    """Points a store would refuse, as a backup's archive can hold them: checked directly."""
    ids = [point_id(CONTAINER, "d", i, "h") for i in range(3)]
    vectors = np.ones((3, 4), dtype=np.float32)
    vectors[1, 2] = np.nan
    scan = ContentScan(CONTAINER, id_set([id_bytes(ids)]), 4, 4)
    scan.add(id_bytes(ids), [payload(i, "h") for i in range(3)], vectors)
    scan.add(id_bytes(ids[:1]), [payload(0, "h")], vectors[:1])
    results = {r.name: r for r in scan.results()}
    assert results["vector_values"].details == {"nan": 1, "zero_norm": 0, "sample": [ids[1]]}
    assert not results["point_ids"].passed and results["point_ids"].summary.endswith("1 repeated")


def test_a_stale_payload(world):
    store, expected, sample, cache, ids = world
    (point,) = store.retrieve("g1", [ids[7]], with_vectors=True)
    store.upsert("g1", [ids[7]], point.vector[None], [payload(7, "old")])
    results = run_all(store, expected, sample, cache)
    assert failing(results) == ["payload_hashes"]
    assert results["payload_hashes"].details["sample"] == [ids[7]]


def test_a_wrong_dimension(world):
    store, expected, sample, cache, _ = world
    results = run_all(store, expected, sample, cache, dimension=64)
    assert failing(results) == ["vector_dimension"]
    assert results["vector_dimension"].summary == "collection is 32-d, the embedder makes 64-d"


def test_repeats_are_counted_within_a_batch_across_batches_and_among_extra_ids():
    ids = [point_id(CONTAINER, "d", i, "h") for i in range(4)]
    stray = point_id(CONTAINER, "other", 0, "h")
    scan = ContentScan(CONTAINER, id_set([id_bytes(ids[:3])]), 2, 2)
    batch = [ids[0], ids[0], ids[1], stray]  # ids[0] twice in one batch, and one id nobody expects
    scan.add(id_bytes(batch), [payload(0, "h")] * 4, np.ones((4, 2), dtype=np.float32))
    scan.add(id_bytes([ids[1], stray]), [payload(1, "h")] * 2, np.ones((2, 2), dtype=np.float32))
    point_ids = {r.name: r for r in scan.results()}["point_ids"]
    assert point_ids.summary == "1 missing, 1 extra point ids, 3 repeated"
    assert point_ids.details["missing_sample"] == [ids[2]] and point_ids.details["extra_sample"] == [stray]
