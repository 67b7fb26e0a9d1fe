"""Model rotation onto a served model through refresh_job (real Dagster execution): from the
in-process MiniLM to the same model served by infinity-emb, and across dimensions; searches of a
container use its live version's query prompt."""

from __future__ import annotations

import pytest

from ops_pipelines_tests.defs.test_refresh_assets import check_outcomes, container
from ops_pipelines_tests.defs.test_sync_assets import top_keys
from ops_pipelines_tests.embedders.test_served import minilm_at, served_registry
from ops_pipelines_tests.embedding_servers import FakeOllama

QUERIES = ("apples in autumn", "bicycle gears", "ice in the mountains", "where rivers meet the sea", "calculus")


@pytest.fixture
def served(infinity, tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_SOURCE_ALLOWED_HOSTS", "127.0.0.1")
    path = served_registry(tmp_path / "embedders.toml", **{"minilm-served@1": minilm_at(infinity.url)})
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(path))
    return "minilm-served@1"


@pytest.mark.minilm
def test_rotation_from_the_in_process_model_to_the_served_one_swaps_and_ranks_the_same(sqlite_harness, corpus, served):
    harness = sqlite_harness
    harness.add_container("docs", corpus, embedder="minilm-l6-v2@1")
    harness.sync("docs")
    before = {q: top_keys(harness, "docs", q) for q in QUERIES}

    result = harness.refresh("docs", served)
    assert result.success and all(check_outcomes(result).values()) and len(check_outcomes(result)) == 6
    assert harness.metadata(result, "version_embeddings")["computed"] == 5
    assert harness.serving("docs") == "kb_docs__minilm-served-1__g2"
    record, _ = container(harness)
    assert record.embedder_version == served
    assert {q: top_keys(harness, "docs", q) for q in QUERIES} == before

    assert harness.rollback("docs").success
    assert harness.serving("docs") == "kb_docs__minilm-l6-v2-1__g1"
    assert {q: top_keys(harness, "docs", q) for q in QUERIES} == before


def test_rotation_across_dimensions_onto_a_served_model(sqlite_harness, corpus, served):
    harness = sqlite_harness
    harness.add_container("docs", corpus)  # hash-256@1
    harness.sync("docs")
    result = harness.refresh("docs", served)
    assert result.success and all(check_outcomes(result).values())
    assert harness.serving("docs") == "kb_docs__minilm-served-1__g2"
    assert top_keys(harness, "docs", "ice in the mountains")[0] == "gamma.md"
    # A sync after the swap embeds a new document with the served model.
    (corpus / "zeta.md").write_text("# Zeta\n\nZeta is about volcanoes and lava.")
    sync = harness.sync("docs")
    assert harness.metadata(sync, "embeddings")["computed"] == 1
    assert top_keys(harness, "docs", "lava from a volcano")[0] == "zeta.md"


def test_searches_use_the_live_versions_query_prompt(sqlite_harness, corpus, tmp_path, monkeypatch):
    server = FakeOllama({"nomic-embed-text": 64})
    monkeypatch.setenv("OPS_SOURCE_ALLOWED_HOSTS", "127.0.0.1")
    keys = {"provider": "ollama", "base_url": server.url, "model": "nomic-embed-text", "dimension": 64,
            "query_prompt": "search_query: ", "document_prompt": "search_document: "}
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(served_registry(tmp_path / "embedders.toml", **{"nomic@1": keys})))
    try:
        sqlite_harness.add_container("docs", corpus, embedder="nomic@1")
        sqlite_harness.sync("docs")
        documents = list(server.inputs)
        top = top_keys(sqlite_harness, "docs", "glaciers")
    finally:
        server.close()
    assert len(documents) == 5 and all(text.startswith("search_document: ") for text in documents)
    assert server.inputs[5:] == ["search_query: glaciers"]
    assert top[0] == "gamma.md"
