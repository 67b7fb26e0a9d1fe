from __future__ import annotations

import numpy as np
import pytest

from ops_pipelines.vectors import (
    DimensionMismatch,
    VectorStoreBusy,
    alias_name,
    generation_name,
    open_vector_store,
    point_id,
)


def test_names_and_point_ids():
    assert alias_name("docs") == "kb_docs"
    assert generation_name("docs", "minilm-l6-v2@1", 3) == "kb_docs__minilm-l6-v2-1__g3"
    a = point_id("c", "d", 0, "h")
    assert a == point_id("c", "d", 0, "h")
    assert len({a, point_id("c", "d", 1, "h"), point_id("c", "d", 0, "h2"), point_id("c2", "d", 0, "h")}) == 4


def test_collections_alias_upsert_delete_search(tmp_path):
    with open_vector_store(path=str(tmp_path / "q")) as store:
        assert store.ensure_collection("g1", 3) is True
        assert store.ensure_collection("g1", 3) is False
        with pytest.raises(DimensionMismatch, match="holds 3-d vectors"):
            store.ensure_collection("g1", 4)
        ids = [point_id("c", "d", i, "h") for i in range(3)]
        vectors = np.eye(3, dtype=np.float32)
        store.upsert("g1", ids, vectors, [{"n": i} for i in range(3)], batch_size=2)
        store.upsert("g1", ids, vectors, [{"n": i} for i in range(3)])  # idempotent
        assert store.count("g1") == 3 and store.point_ids("g1") == set(ids)

        store.point_alias("kb_x", "g1")
        assert store.resolve_alias("kb_x") == "g1"
        hits = store.search("kb_x", np.array([0, 1, 0], dtype=np.float32), limit=1)
        assert hits[0].id == ids[1] and hits[0].payload == {"n": 1}

        store.ensure_collection("g2", 3)
        store.point_alias("kb_x", "g2")
        assert store.resolve_alias("kb_x") == "g2"
        assert store.count("g1") == 3  # the old generation is kept

        store.delete("g1", ids[:2])
        assert store.point_ids("g1") == {ids[2]}


def test_local_storage_held_by_another_client_times_out_clearly(tmp_path):
    path = str(tmp_path / "q")
    with open_vector_store(path=path), pytest.raises(VectorStoreBusy, match="stayed locked"):
        with open_vector_store(path=path, wait_seconds=0.3):
            pass
    with open_vector_store(path=path) as store:  # released on exit
        assert store.resolve_alias("kb_none") is None


def test_bulk_loaded_local_collection_reads_back_like_upserted_points(tmp_path):
    """Local mode's one-transaction load and ordinary upserts give the same points, vectors, payloads
    and search results through the public client, and the collection survives a reopen."""
    from ops_pipelines.vectors.local_load import local_load_supported

    rng = np.random.default_rng(3)
    ids = [point_id("c", f"d{i}", 0, "h") for i in range(300)]
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    payloads = [{"n": i, "text": f"chunk {i}"} for i in range(300)]
    with open_vector_store(path=str(tmp_path / "q")) as store:
        store.ensure_collection("probe", 16)
        assert local_load_supported(store.local_path, "probe")
        batches = [(ids[:20], vectors[:20], payloads[:20]), (ids[20:], vectors[20:], payloads[20:])]
        assert store.load_collection("bulk", 16, iter(batches)) == 300
        store.ensure_collection("upserted", 16)
        store.upsert("upserted", ids, vectors, payloads)
        with pytest.raises(ValueError, match="already exists"):
            store.load_collection("bulk", 16, batches)

    def read(store, name):
        points = sorted(store.scroll(name, with_payload=True, with_vectors=True), key=lambda p: str(p.id))
        return [(str(p.id), p.payload, np.round(p.vector, 6).tolist()) for p in points]

    with open_vector_store(path=str(tmp_path / "q")) as store:
        assert store.count("bulk") == 300
        assert read(store, "bulk") == read(store, "upserted")
        for row in (0, 150, 299):
            assert store.search("bulk", vectors[row], 3) == store.search("upserted", vectors[row], 3)


def test_a_few_points_beside_many_are_upserted_not_bulk_loaded(tmp_path):
    """The bulk load reopens the client, which reads every stored point back: worth it for a large
    collection, not for a handful of points in a full folder."""
    rng = np.random.default_rng(5)
    ids = [point_id("c", f"d{i}", 0, "h") for i in range(300)]
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    payloads = [{"n": i} for i in range(300)]
    with open_vector_store(path=str(tmp_path / "q")) as store:
        client = store.client
        assert store.load_collection("first", 8, [(ids, vectors, payloads)], points=300) == 300
        assert store.client is not client  # bulk: reopened
        client = store.client
        assert store.load_collection("small", 8, [(ids[:10], vectors[:10], payloads[:10])], points=10) == 10
        assert store.client is client  # upserted: 10 points beside 300 stored
        assert store.count("small") == 10
        assert store.load_collection("large", 8, [(ids[:100], vectors[:100], payloads[:100])], points=100) == 100
        assert store.client is not client and store.count("large") == 100
