"""The retrieval_quality check of the swap gate, under real Dagster execution: a worse model is
not swapped in, an equal one is, a first build meets its floor, a container without a golden set
is measured on a synthetic one, and a golden set that no longer matches the documents is named."""

from __future__ import annotations

import random

import pytest
from dagster import materialize

from ops_pipelines.defs.sync.assets import chunks, embeddings, source_documents
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.kb.golden_sets import QualityBounds
from ops_pipelines.search import search_live

REGISTRY = "".join(
    f'[versions."{name}"]\nprovider = "hashing"\ndimension = {dimension}\n{extra}\n'
    for name, dimension, extra in (
        ("hash-32@1", 32, ""), ("hash-16@1", 16, ""), ("hash-256@2", 256, ""),
        ("hash-32-bm25@1", 32, 'sparse = "bm25"\n'), ("hash-256-floor@1", 256, "min_score = 0.99\n"),
    )
)
FILLER = "the service keeps a log of every request and answer".split()


@pytest.fixture
def topics(tmp_path, monkeypatch):
    """30 documents, each with four words of its own among common ones; a golden query a document."""
    registry = tmp_path / "embedders.toml"
    registry.write_text(REGISTRY)
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(registry))
    root = tmp_path / "topics"
    root.mkdir()
    rng = random.Random(3)
    for i in range(30):
        words = " ".join(f"topic{i}word{j}" for j in range(4))
        (root / f"topic{i:02}.md").write_text(
            f"# Topic {i}\n\n{' '.join(rng.sample(FILLER, 6))} {words} {' '.join(rng.sample(FILLER, 6))}"
        )
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(
        f'{{"id": "t{i}", "query": "topic{i}word0 topic{i}word1", "relevant": ["topic{i:02}.md"]}}\n' for i in range(30)
    ))
    return root, golden


def quality(result) -> tuple[bool, str, dict]:
    (event,) = [
        e for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "retrieval_quality"
    ]
    data = event.asset_check_evaluation_data
    return data.passed, data.description, {k: v.value for k, v in data.metadata.items()}


def register(harness, golden) -> None:
    from ops_pipelines.quality import register_golden_set

    kb = KnowledgeBase(harness.kb_url)
    try:
        register_golden_set(kb, kb.get_container("docs"), golden.read_text(), str(golden))
    finally:
        kb.close()


@pytest.fixture
def synced(sqlite_harness, topics):
    sqlite_harness.add_container("docs", topics[0])
    sqlite_harness.sync("docs")
    return sqlite_harness


def test_a_rotation_to_a_worse_model_is_blocked_and_the_alias_untouched(synced, topics):
    register(synced, topics[1])
    result = synced.refresh("docs", "hash-32@1", raise_on_error=False)
    assert not result.success
    passed, summary, metadata = quality(result)
    assert not passed
    assert "worse than live g1 (hash-256@1) beyond the tolerance of 0.02" in summary and "(30 queries)" in summary
    assert metadata["synthetic"] is False and metadata["live_embedder_version"] == "hash-256@1"
    assert metadata["shadow_mrr@10"] < metadata["live_mrr@10"] - 0.02
    assert metadata["delta_mrr@10"] == pytest.approx(metadata["shadow_mrr@10"] - metadata["live_mrr@10"], abs=1e-3)
    changed = [record.data for record in metadata["changed_queries"].records]  # a table in the UI
    assert metadata["queries_lost"] >= 1 and changed and {"query_id", "live_recall", "shadow_recall"} <= set(changed[0])
    assert any(row["shadow_recall"] < row["live_recall"] for row in changed)
    assert synced.serving("docs") == "kb_docs__hash-256-1__g1"  # no swap


def test_an_equal_model_passes_and_swaps(synced, topics):
    register(synced, topics[1])
    result = synced.refresh("docs", "hash-256@2")
    passed, summary, metadata = quality(result)
    assert passed and summary.startswith("docs hash-256@2 (g2): as good as live g1 within 0.02 on the golden set ")
    assert (metadata["container"], metadata["embedder_version"], metadata["generation"]) == ("docs", "hash-256@2", 2)
    assert metadata["delta_recall@10"] == 0 and metadata["changed_queries"] == []
    assert synced.serving("docs") == "kb_docs__hash-256-2__g2"


def test_without_a_golden_set_a_synthetic_one_of_titles_is_used_and_said(synced):
    result = synced.refresh("docs", "hash-256@2")
    passed, summary, metadata = quality(result)
    assert passed and "synthetic golden set (30 document titles)" in summary
    assert metadata["synthetic"] is True and metadata["golden_set"] == "synthetic golden set (30 document titles)"
    # titles calibrate too easy a least score: reported, not applied
    assert "shadow_min_score" in metadata and search(synced, "quarkle brimbonix").min_score is None


@pytest.mark.parametrize(("version", "floor", "swapped"), [("hash-256@1", "0.9", True), ("hash-16@1", "0.95", False)])
def test_a_first_build_is_held_to_the_floor(sqlite_harness, topics, monkeypatch, version, floor, swapped):
    """Nothing live yet (a sync that stopped before its collection): the built generation must
    reach OPS_QUALITY_FLOOR's recall@10 on its own."""
    monkeypatch.setenv("OPS_QUALITY_FLOOR", floor)
    sqlite_harness.add_container("docs", topics[0])
    materialize([source_documents, chunks, embeddings], partition_key="docs", instance=sqlite_harness.instance,
                resources=sqlite_harness.resources())
    register(sqlite_harness, topics[1])
    result = sqlite_harness.refresh("docs", version, raise_on_error=False)
    passed, summary, metadata = quality(result)
    assert (passed, result.success) == (swapped, swapped)
    assert f"floor {float(floor):.2f}" in summary and "nothing live to compare with" in summary
    assert metadata["floor"] == float(floor)
    assert (sqlite_harness.serving("docs") is not None) == swapped


def test_a_golden_set_naming_documents_gone_since_fails_the_check_clearly(synced, topics):
    register(synced, topics[1])
    (topics[0] / "topic03.md").unlink()
    synced.sync("docs")  # archives it
    result = synced.refresh("docs", "hash-256@2", raise_on_error=False)
    passed, summary, _ = quality(result)
    assert not passed and not result.success
    assert "names 1 source key(s) 'docs' no longer has (topic03.md)" in summary
    assert "ops-pipelines eval set docs FILE" in summary


def bound(harness, bounds: QualityBounds) -> None:
    kb = harness.kb()
    try:
        kb.set_quality_bounds(kb.get_container("docs").id, bounds)
    finally:
        kb.close()


def search(harness, query: str):
    kb = harness.kb()
    try:
        with harness.vector_store() as store:
            return search_live(kb, store, "docs", query, 5)
    finally:
        kb.close()


def test_a_container_s_own_tolerance_replaces_the_default(synced, topics):
    register(synced, topics[1])
    bound(synced, QualityBounds(tolerance=1.0))
    result = synced.refresh("docs", "hash-32@1")
    passed, summary, metadata = quality(result)
    assert passed and "within 1.00" in summary and metadata["tolerance"] == 1.0
    assert synced.serving("docs") == "kb_docs__hash-32-1__g2"


def test_a_container_s_own_floor_holds_a_first_build(sqlite_harness, topics):
    sqlite_harness.add_container("docs", topics[0])
    materialize([source_documents, chunks, embeddings], partition_key="docs", instance=sqlite_harness.instance,
                resources=sqlite_harness.resources())
    register(sqlite_harness, topics[1])
    bound(sqlite_harness, QualityBounds(floor=0.99))
    result = sqlite_harness.refresh("docs", "hash-16@1", raise_on_error=False)
    passed, summary, _ = quality(result)
    assert not passed and "floor 0.99" in summary and sqlite_harness.serving("docs") is None


def test_hybrid_search_is_a_rotation_the_gate_judges(synced, topics):
    """hash-32 alone loses the topic words to collisions; with BM25 beside it, the exact words are
    found again, and the gate lets it in where it blocked hash-32 alone."""
    register(synced, topics[1])
    alone = synced.refresh("docs", "hash-32@1", raise_on_error=False)
    assert not quality(alone)[0]
    result = synced.refresh("docs", "hash-32-bm25@1")
    passed, summary, metadata = quality(result)
    assert passed and metadata["shadow_recall@10"] == 1.0 and metadata["shadow_mrr@10"] == 1.0
    assert synced.serving("docs") == "kb_docs__hash-32-bm25-1__g3"
    with synced.vector_store() as store:
        assert store.is_hybrid("kb_docs__hash-32-bm25-1__g3")
    hits = search(synced, "topic7word2 topic7word3").hits
    assert hits[0].payload["source_key"] == "topic07.md" and hits[0].score <= 2 / 60 + 1e-6  # a rank fusion's score


def test_the_gate_calibrates_the_least_score_so_words_in_no_document_find_nothing(synced, tmp_path):
    golden = tmp_path / "four-words.jsonl"  # (two words of a topic can collide away in 256 hashed cells)
    golden.write_text("".join(
        f'{{"query": "{" ".join(f"topic{i}word{j}" for j in range(4))}", "relevant": ["topic{i:02}.md"]}}\n'
        for i in range(30)
    ))
    register(synced, golden)
    result = synced.refresh("docs", "hash-256@2")
    _, _, metadata = quality(result)
    assert metadata["shadow_probes_refused"] == 1.0 and metadata["shadow_golden_answered"] == 1.0
    assert metadata["shadow_probe_high"] < metadata["shadow_min_score"] < metadata["shadow_golden_low"]
    kb = synced.kb()
    try:
        live = kb.live_generation(kb.get_container("docs").id)
    finally:
        kb.close()
    assert live.min_score == pytest.approx(metadata["shadow_min_score"], abs=1e-4)
    answered = search(synced, "topic5word0 topic5word1 topic5word2 topic5word3")
    assert answered.hits[0].payload["source_key"] == "topic05.md" and answered.min_score == live.min_score
    nonsense = search(synced, "quarkle brimbonix")
    assert nonsense.hits == [] and nonsense.best_dropped < live.min_score


def test_a_version_s_own_least_score_overrides_the_calibrated_one(synced, topics):
    register(synced, topics[1])
    synced.refresh("docs", "hash-256-floor@1")
    searched = search(synced, "topic5word0 topic5word1")
    assert searched.min_score == 0.99 and searched.hits == [] and searched.best_dropped is not None
