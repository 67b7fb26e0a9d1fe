"""The retrieval_quality check of the swap gate, under real Dagster execution: a worse model is
not swapped in, an equal one is, a first build meets its floor, a container without a golden set
is measured on a synthetic one, and a golden set that no longer matches the documents is named."""

from __future__ import annotations

import random

import pytest
from dagster import materialize

from ops_pipelines.defs.sync.assets import chunks, embeddings, source_documents
from ops_pipelines.kb import KnowledgeBase

REGISTRY = "".join(
    f'[versions."{name}"]\nprovider = "hashing"\ndimension = {dimension}\n\n'
    for name, dimension in (("hash-32@1", 32), ("hash-16@1", 16), ("hash-256@2", 256))
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
    changed = metadata["changed_queries"]
    assert metadata["queries_lost"] >= 1 and changed and {"query_id", "live_recall", "shadow_recall"} <= set(changed[0])
    assert synced.serving("docs") == "kb_docs__hash-256-1__g1"  # no swap


def test_an_equal_model_passes_and_swaps(synced, topics):
    register(synced, topics[1])
    result = synced.refresh("docs", "hash-256@2")
    passed, summary, metadata = quality(result)
    assert passed and summary.startswith("as good as live g1 within 0.02 on the golden set ")
    assert metadata["delta_recall@10"] == 0 and metadata["changed_queries"] == []
    assert synced.serving("docs") == "kb_docs__hash-256-2__g2"


def test_without_a_golden_set_a_synthetic_one_of_titles_is_used_and_said(synced):
    result = synced.refresh("docs", "hash-256@2")
    passed, summary, metadata = quality(result)
    assert passed and "synthetic golden set (30 document titles)" in summary
    assert metadata["synthetic"] is True and metadata["golden_set"] == "synthetic golden set (30 document titles)"


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
