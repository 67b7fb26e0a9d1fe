"""The ``VectorStore`` contract, on both backends (``any_store``: Qdrant Edge, and qdrant-client's
local mode standing in for a Qdrant server), plus what only the embedded engine does."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.refresh import swap_to
from ops_pipelines.vectors import (
    CollectionNotFound,
    DimensionMismatch,
    EdgeVectorStore,
    LegacyVectorFolder,
    VectorStoreBusy,
    alias_name,
    edge,
    generation_name,
    point_id,
)
from ops_pipelines.vectors.serving import publish_all, served_collections, serving_collection
from ops_pipelines_tests.conftest import backend_store

IDS = [point_id("c", "d", i, "h") for i in range(3)]


def test_names_and_point_ids():
    assert alias_name("docs") == "kb_docs"
    assert generation_name("docs", "minilm-l6-v2@1", 3) == "kb_docs__minilm-l6-v2-1__g3"
    a = point_id("c", "d", 0, "h")
    assert a == point_id("c", "d", 0, "h")
    assert len({a, point_id("c", "d", 1, "h"), point_id("c", "d", 0, "h2"), point_id("c2", "d", 0, "h")}) == 4


def test_collections_and_their_dimension(any_store):
    store = any_store
    assert store.collection_dimension("g1") is None
    assert store.ensure_collection("g1", 3) is True
    assert store.ensure_collection("g1", 3) is False
    with pytest.raises(DimensionMismatch, match="holds 3-d vectors"):
        store.ensure_collection("g1", 4)
    store.ensure_collection("g0", 5)
    assert store.collection_names() == ["g0", "g1"]
    assert (store.collection_dimension("g0"), store.collection_dimension("g1")) == (5, 3)
    assert store.drop_collection("g0") is True and store.drop_collection("g0") is False
    assert store.collection_names() == ["g1"] and store.collection_dimension("g0") is None


def test_points_upsert_scroll_retrieve_search_delete(any_store):
    store = any_store
    store.ensure_collection("g1", 3)
    vectors = np.eye(3, dtype=np.float32)
    payloads = [{"n": i, "chunk_hash": f"h{i}"} for i in range(3)]
    store.upsert("g1", IDS, vectors, payloads)
    store.upsert("g1", IDS, vectors, payloads)  # idempotent
    assert store.count("g1") == 3 and store.point_ids("g1") == set(IDS)

    points = list(store.scroll("g1", with_payload=["chunk_hash"], with_vectors=True, page=2))
    assert [p.id for p in points] == sorted(IDS)  # id order, across pages
    first = points[0]
    row = IDS.index(first.id)
    assert first.payload == {"chunk_hash": f"h{row}"} and np.allclose(first.vector, vectors[row])
    assert all(p.vector is None and not p.payload for p in store.scroll("g1"))
    (got,) = store.retrieve("g1", [IDS[1], point_id("c", "d", 9, "h")])
    assert (got.id, got.payload, got.vector) == (IDS[1], payloads[1], None)

    hits = store.search("g1", np.array([0, 1, 0], dtype=np.float32), limit=1)
    assert [(h.id, h.payload["n"], round(h.score, 4)) for h in hits] == [(IDS[1], 1, 1.0)]

    store.delete("g1", IDS[:2])
    assert store.point_ids("g1") == {IDS[2]} and store.count("g1") == 1


def test_a_collection_keeps_its_points_when_reopened(store_backend, tmp_path):
    with backend_store(store_backend, tmp_path / "q") as store:
        store.ensure_collection("g1", 3)
        store.upsert("g1", IDS, np.eye(3, dtype=np.float32), [{}] * 3)
    with backend_store(store_backend, tmp_path / "q") as store:
        assert store.point_ids("g1") == set(IDS) and store.collection_dimension("g1") == 3


def test_the_alias_swap_serves_one_generation_at_a_time(any_store, sqlite_url):
    """Both backends: the swap moves what searches of the container reach, and a container the
    knowledge base no longer has is served by nothing."""
    store, kb = any_store, KnowledgeBase(sqlite_url)
    try:
        container = kb.add_container("docs", "folder", "/srv", "hash-256@1")
        assert serving_collection(kb, store, container) is None  # nothing live yet
        for n in (1, 2):
            gen, _ = kb.open_generation(container.id, "hash-256@1", lambda k: f"kb_docs__g{k}")
            store.ensure_collection(gen.collection, 3)
            store.upsert(gen.collection, [IDS[n]], np.eye(3, dtype=np.float32)[n : n + 1], [{"g": n}])
            assert serving_collection(kb, store, container) == (None if n == 1 else "kb_docs__g1")  # built, not swapped
            swap_to(kb, store, container, gen, retention=None)
            assert serving_collection(kb, store, container) == f"kb_docs__g{n}"
        assert served_collections(kb, store) == {"kb_docs__g2"}
        assert store.count("kb_docs__g1") == 1  # the old generation is kept
        kb.delete_container(container.id)
        publish_all(kb, store)
        assert served_collections(kb, store) == set()
    finally:
        kb.close()


def test_a_server_moves_its_real_alias_atomically(tmp_path):
    with backend_store("server", tmp_path / "q") as store:
        store.ensure_collection("g1", 3)
        store.ensure_collection("g2", 3)
        store.point_alias("kb_x", "g1")
        assert store.resolve_alias("kb_x") == "g1"
        store.replace_aliases({"kb_x": "g2", "kb_y": "g1"}, prefix="kb_")
        assert store.aliases() == {"kb_x": "g2", "kb_y": "g1"}
        store.upsert("g2", IDS[:1], np.eye(3, dtype=np.float32)[:1], [{}])
        assert store.search("kb_x", np.eye(3, dtype=np.float32)[0], 1)[0].id == IDS[0]  # searched by alias


def test_edge_builds_the_index_where_it_pays(tmp_path, monkeypatch):
    """Below the threshold nothing is built; above it the optimizers run (in a child process) and
    the store answers the same searches afterwards, in this process, without reopening by hand."""
    monkeypatch.setattr(edge, "INDEX_MIN_POINTS", 200)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    ids = [point_id("c", f"d{i}", 0, "h") for i in range(300)]
    store = EdgeVectorStore(tmp_path / "q")
    try:
        store.ensure_collection("g1", 16)
        store.upsert("g1", ids[:100], vectors[:100], [{"n": i} for i in range(100)])
        assert store.build_index("g1") is False
        store.upsert("g1", ids[100:], vectors[100:], [{"n": i} for i in range(100, 300)])
        before = [h.id for h in store.search("g1", vectors[250], 5)]
        assert store.build_index("g1") is True
        assert [h.id for h in store.search("g1", vectors[250], 5)] == before and before[0] == ids[250]
        assert store.count("g1") == 300
    finally:
        store.close()


_HOLDER = textwrap.dedent(
    """
    import sys
    from ops_pipelines.vectors import EdgeVectorStore
    store = EdgeVectorStore(sys.argv[1])
    store.count("g1")
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    store.close()
    """
)


def test_edge_waits_for_another_process_then_names_it(tmp_path):
    root = tmp_path / "q"
    store = EdgeVectorStore(root)
    store.ensure_collection("g1", 3)
    store.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        waiting = EdgeVectorStore(root, wait_seconds=0.3)
        with pytest.raises(VectorStoreBusy, match=rf"collection g1 is held open by another process \(pid {holder.pid} "):
            waiting.count("g1")
        assert waiting.collection_dimension("g1") == 3  # what needs no open still answers
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert waiting.count("g1") == 0  # released when the other process let go
    waiting.close()


def test_edge_shares_one_open_shard_between_stores_of_a_process(tmp_path):
    first, second = EdgeVectorStore(tmp_path / "q"), EdgeVectorStore(tmp_path / "q")
    first.ensure_collection("g1", 3)
    first.upsert("g1", IDS, np.eye(3, dtype=np.float32), [{}] * 3)
    assert second.count("g1") == 3  # no WouldBlock: the same shard
    first.close()
    assert second.count("g1") == 3  # still open for the other user
    second.close()
    with pytest.raises(CollectionNotFound, match="does not exist"):
        EdgeVectorStore(tmp_path / "q").count("nope")


_COUNT = """
import sys
from ops_pipelines.vectors import EdgeVectorStore
store = EdgeVectorStore(sys.argv[1], wait_seconds=0.3)
print(store.count(sys.argv[2]))
store.close()
"""


def test_edge_releases_one_shard_and_opens_it_again_on_its_next_use(tmp_path):
    root = tmp_path / "q"
    store = EdgeVectorStore(root)
    for name in ("g1", "g2"):
        store.ensure_collection(name, 3)
        store.upsert(name, IDS, np.eye(3, dtype=np.float32), [{}] * 3)
    store.release("g1")

    def count_elsewhere(name):
        return subprocess.run([sys.executable, "-c", _COUNT, str(root), name], capture_output=True, text=True)

    released, held = count_elsewhere("g1"), count_elsewhere("g2")
    assert released.stdout.strip() == "3", released.stderr  # closed here: another process opens it
    assert held.returncode != 0 and "held open by another process" in held.stderr
    assert store.count("g1") == 3  # opened again for its next use
    store.close()


def test_edge_refuses_a_local_mode_folder_and_names_the_migration(tmp_path):
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "meta.json").write_text("{}")
    with pytest.raises(LegacyVectorFolder, match="ops-pipelines vectors migrate"):
        EdgeVectorStore(tmp_path / "q")


def test_id_arrays_are_the_point_ids(any_store):
    """The batch-hashed ids are ``point_id``'s uuid5s, and a store's id array holds its points."""
    from ops_pipelines.vectors.ids import id_strings, point_id_array

    rows = [(f"doc-{i}", i % 3, f"hash-{i}") for i in range(50)]
    assert id_strings(point_id_array("c", rows)) == [point_id("c", *r) for r in rows]
    any_store.ensure_collection("g1", 3)
    ids = [point_id("c", *r) for r in rows]
    any_store.upsert("g1", ids, np.tile(np.eye(3, dtype=np.float32)[0], (50, 1)), [{}] * 50)
    assert id_strings(any_store.id_array("g1")) == sorted(ids)


def test_an_exact_search_compares_every_point(tmp_path, monkeypatch):
    """``exact`` bypasses the index: with a deliberately weak HNSW graph most points are missed at
    rank 1 through the index (so it is in use), none by an exact search (what the self-retrieval
    check does: it checks the points, not the index)."""
    from ops_pipelines.embedders.hashing import HashingEmbedder

    monkeypatch.setattr(edge, "INDEX_MIN_POINTS", 1000)
    monkeypatch.setattr(edge, "SEARCH_EF", 1)
    monkeypatch.setattr(edge, "_HNSW", dict(m=4, ef_construct=8, full_scan_threshold=1))
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(2000)]
    vectors = HashingEmbedder(64).embed([" ".join(rng.choice(words, 8)) for _ in range(40_000)])
    ids = [point_id("c", f"d{i}", 0, "h") for i in range(len(vectors))]
    store = EdgeVectorStore(tmp_path / "q")
    try:
        store.ensure_collection("g1", 64)
        store.upsert("g1", ids, vectors, [{}] * len(ids))
        assert store.build_index("g1")
        sample = rng.choice(len(ids), 300, replace=False)
        indexed = sum(store.search("g1", vectors[i], 1)[0].id == ids[i] for i in sample)
        exact = sum(store.search("g1", vectors[i], 1, exact=True)[0].id == ids[i] for i in sample)
    finally:
        store.close()
    assert indexed < 300 and exact == 300


def test_writers_index_each_segment_as_it_fills(tmp_path, monkeypatch, caplog):
    """A ``CollectionWriter`` indexes every ``index_batch`` points it writes, so each index build
    covers one segment (a build over a whole large collection took 4 GB), and the optimizers never
    merge the indexed segments back into one; the remainder below the threshold stays unindexed."""
    import logging

    from ops_pipelines.ingest import CollectionWriter

    monkeypatch.setattr(edge, "INDEX_MIN_POINTS", 200)
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(650, 16)).astype(np.float32)
    ids = [point_id("c", f"d{i}", 0, "h") for i in range(650)]
    store = EdgeVectorStore(tmp_path / "q")
    try:
        store.ensure_collection("g1", 16)
        writer = CollectionWriter(store, "g1", logging.getLogger("writer"))
        with caplog.at_level(logging.INFO, logger="writer"):
            for start in range(0, 650, 100):
                writer.upsert(ids[start : start + 100], vectors[start : start + 100], [{"n": i} for i in range(start, min(start + 100, 650))])
            total = writer.finish()
        builds = [r for r in caplog.records if "index built in" in r.getMessage()]
        assert len(builds) == 3 and total is not None and writer.written == 650
        with edge._OPEN.entry(store._path("g1")).use(store._path("g1")) as shard:
            info = shard.info()
        assert info.indexed_vectors_count == 600 and info.points_count == 650
        assert info.segments_count >= 4  # three indexed segments, and the one being appended to
        assert store.search("g1", vectors[640], 1)[0].id == ids[640]  # unindexed points are found too
        assert store.search("g1", vectors[10], 1)[0].id == ids[10]
    finally:
        store.close()


def test_edge_reopens_a_shard_after_many_points_so_memory_stays_flat(tmp_path, monkeypatch):
    """Scrolling payloads or vectors, or writing, past ``RECYCLE_POINTS`` reopens the shard (its
    mapped pages leave the process); an ids-only scroll does not; a search in another thread
    meanwhile waits for the reopen and never fails."""
    import threading

    monkeypatch.setattr(edge, "RECYCLE_POINTS", 100)
    opened = []
    real_open = edge._open_waiting
    monkeypatch.setattr(edge, "_open_waiting", lambda *a: opened.append(a[0]) or real_open(*a))
    ids = [point_id("c", f"d{i}", 0, "h") for i in range(250)]
    vectors = np.random.default_rng(2).normal(size=(250, 8)).astype(np.float32)
    store = EdgeVectorStore(tmp_path / "q")
    failures, done = [], threading.Event()

    def search() -> None:
        while not done.is_set():
            try:
                store.search("g1", vectors[0], 1)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                failures.append(exc)

    try:
        store.ensure_collection("g1", 8)
        store.upsert("g1", ids[:150], vectors[:150], [{"n": i} for i in range(150)])
        store.upsert("g1", ids[150:], vectors[150:], [{"n": i} for i in range(150, 250)])
        assert len(opened) == 2 and store.count("g1") == 250  # closed after each 100 written, reopened when used
        assert len(opened) == 3
        searcher = threading.Thread(target=search)
        searcher.start()
        pages = list(store.pages("g1", with_payload=True, with_vectors=True, page=50))
        assert sum(len(p) for p in pages) == 250 and len(opened) >= 3 + 2
        before = len(opened)
        assert len(store.id_array("g1")) == 250 and len(opened) == before  # ids alone: no reopen
        done.set()
        searcher.join()
        assert failures == []
    finally:
        done.set()
        store.close()


def test_a_search_among_given_points_sees_only_them(any_store):
    """``among`` restricts a search (the self-retrieval check's: exact, among its sampled points)."""
    ids = [point_id("c", f"d{i}", 0, "h") for i in range(6)]
    vectors = np.eye(6, dtype=np.float32)
    any_store.ensure_collection("g1", 6)
    any_store.upsert("g1", ids, vectors, [{"n": i} for i in range(6)])
    assert [h.id for h in any_store.search("g1", vectors[0], 1, exact=True)] == [ids[0]]
    hits = any_store.search("g1", vectors[0] + 0.5 * vectors[4], 6, exact=True, among=[ids[3], ids[4], ids[5]])
    assert {h.id for h in hits} == {ids[3], ids[4], ids[5]} and hits[0].id == ids[4]


TEXTS = [
    "Rotate the embedding model with a shadow generation and swap the alias",
    "Restore the nightly backup into a new database",
    "Vacuum the chunks table and prune archived documents",
    "The breaker opens after repeated source failures",
]


def _hybrid_collection(store, name="h1"):
    assert store.ensure_collection(name, 3, hybrid=True) is True
    ids = [point_id("c", "d", i, "h") for i in range(len(TEXTS))]
    vectors = np.array([[1, 0, 0], [0.9, 0.1, 0], [0.8, 0.2, 0], [0.7, 0.3, 0]], dtype=np.float32)
    payloads = [{"text": t, "n": i, "fields": {"team": "ops" if i % 2 else "search"}} for i, t in enumerate(TEXTS)]
    store.upsert(name, ids, vectors, payloads)
    return ids


def test_a_hybrid_collection_fuses_bm25_with_the_dense_ranking(any_store):
    store = any_store
    ids = _hybrid_collection(store)
    assert store.is_hybrid("h1") and store.ensure_collection("h1", 3, hybrid=True) is False
    query = np.array([1, 0, 0], dtype=np.float32)  # the dense ranking alone puts point 0 first
    assert [h.payload["n"] for h in store.search("h1", query, limit=4)][0] == 0
    fused = store.search("h1", query, limit=4, text="prune archived documents")
    # the BM25 list lifts point 2 (its words) above point 0 (first in the dense list only)
    assert fused[0].id == ids[2]
    assert fused[0].score > fused[1].score and fused[0].score <= 2 / 60 + 1e-6
    # words in no document: only the dense list counts, so no score reaches a two-list match's
    nothing = store.search("h1", query, limit=4, text="zyzzyva quokka")
    assert max(h.score for h in nothing) < min(h.score for h in fused[:1])
    # the dense vector reads back alone (a hybrid point has two)
    (stored,) = store.retrieve("h1", [ids[2]], with_vectors=True)
    assert np.allclose(stored.vector, np.array([0.8, 0.2, 0]) / np.hypot(0.8, 0.2), atol=1e-4)
    assert next(iter(store.pages("h1", with_vectors=True))).vectors.shape == (4, 3)


def test_a_collection_is_built_hybrid_or_not_for_good(any_store):
    store = any_store
    store.ensure_collection("plain", 3)
    assert not store.is_hybrid("plain")
    with pytest.raises(DimensionMismatch, match="lacks BM25 vectors"):
        store.ensure_collection("plain", 3, hybrid=True)
    store.ensure_collection("h", 3, hybrid=True)
    with pytest.raises(DimensionMismatch, match="keeps BM25 vectors"):
        store.ensure_collection("h", 3)
    # text on a plain collection is a dense search
    store.upsert("plain", IDS[:1], np.eye(3, dtype=np.float32)[:1], [{"text": "swap"}])
    assert store.search("plain", np.array([1, 0, 0], dtype=np.float32), text="swap")[0].score == pytest.approx(1.0)


def test_a_search_keeps_the_points_whose_payload_matches(any_store):
    store = any_store
    ids = _hybrid_collection(store)
    store.create_field_index("h1", "fields.team")
    store.create_field_index("h1", "fields.team")  # idempotent
    query = np.array([1, 0, 0], dtype=np.float32)
    ops = store.search("h1", query, limit=4, where={"fields.team": "ops"})
    assert [h.id for h in ops] == [ids[1], ids[3]]
    fused = store.search("h1", query, limit=4, text="prune archived documents", where={"fields.team": "ops"})
    assert {h.id for h in fused} == {ids[1], ids[3]}
    assert store.search("h1", query, limit=4, where={"fields.team": "nobody"}) == []
