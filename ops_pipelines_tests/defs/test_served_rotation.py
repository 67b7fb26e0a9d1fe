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
    assert result.success and all(check_outcomes(result).values()) and len(check_outcomes(result)) == 7
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


TOKEN_VERSION = (
    '[versions."hash-256-tokens@1"]\nprovider = "hashing"\ndimension = 256\nwindow = 256\n'
    'chunker = "minilm-tokens-254@1"\n'
)


def test_rotation_to_a_version_with_another_chunker_cuts_its_chunks_beside_the_live_ones(
    sqlite_harness, corpus, tmp_path, monkeypatch
):
    """The shadow generation holds the new chunker's chunks while the live one keeps serving the
    old; after the swap syncs keep the new ones; a rollback serves the old chunks again."""
    from ops_pipelines.kb import KnowledgeBase

    registry = tmp_path / "embedders.toml"
    registry.write_text(TOKEN_VERSION)
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(registry))
    long_paragraph = " ".join(f"Sentence {i} explains how a restore replays the write-ahead log." for i in range(60))
    (corpus / "long.md").write_text("# Long\n\n" + long_paragraph)
    harness = sqlite_harness
    harness.add_container("docs", corpus)  # hash-256@1: para-800@1
    harness.sync("docs")

    result = harness.refresh("docs", "hash-256-tokens@1")
    assert result.success and all(check_outcomes(result).values())
    embedded = harness.metadata(result, "version_embeddings")
    assert embedded["chunker"] == "minilm-tokens-254@1" and embedded["documents_chunked"] == 6
    kb = KnowledgeBase(harness.kb_url)
    try:
        docs = kb.get_container("docs")
        para, tokens = kb.count_active_chunks(docs.id, "para-800@1"), kb.count_active_chunks(docs.id, "minilm-tokens-254@1")
    finally:
        kb.close()
    assert para != tokens
    assert harness.metadata(result, "shadow_collection")["points"] == tokens
    assert top_keys(harness, "docs", "replays the write-ahead log")[0] == "long.md"

    (corpus / "zeta.md").write_text("# Zeta\n\nZeta is about volcanoes and lava.")
    sync = harness.sync("docs")
    assert harness.metadata(sync, "chunks")["chunker"] == "minilm-tokens-254@1"
    assert harness.metadata(sync, "live_collection")["points"] == tokens + 1

    assert harness.rollback("docs").success
    assert harness.serving("docs") == "kb_docs__hash-256-1__g1"
    sync = harness.sync("docs")  # the live generation is para-800@1's again: its chunks are kept up to date
    assert harness.metadata(sync, "chunks")["chunker"] == "para-800@1"
    assert harness.metadata(sync, "live_collection")["points"] == para + 1
    assert top_keys(harness, "docs", "volcanoes and lava")[0] == "zeta.md"


@pytest.mark.minilm
def test_the_embeddings_step_counts_chunks_longer_than_the_model_reads(sqlite_harness, corpus):
    log_lines = " ".join(f"kb_docs__g{i}.log:{i}" for i in range(40))
    (corpus / "long.md").write_text(log_lines)  # 779 characters, one para-800@1 chunk, 482 word pieces
    sqlite_harness.add_container("old", corpus, embedder="minilm-l6-v2@1")
    sqlite_harness.add_container("new", corpus, embedder="minilm-l6-v2@2")
    old = sqlite_harness.metadata(sqlite_harness.sync("old"), "embeddings")
    new = sqlite_harness.metadata(sqlite_harness.sync("new"), "embeddings")
    assert old["chunks_over_window"] >= 1 and old["chunker"] == "para-800@1"
    assert "chunks_over_window" not in new and new["chunker"] == "minilm-tokens-254@1"


def test_a_sync_whose_served_model_is_down_fails_in_one_line_and_caches_nothing(sqlite_harness, corpus, tmp_path, monkeypatch):
    from ops_pipelines_tests.conftest import step_failure_message

    server = FakeOllama({"nomic-embed-text": 64})
    url = server.url
    server.close()  # nothing answers there any more
    monkeypatch.setenv("OPS_SOURCE_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("OPS_SOURCE_RETRIES", "1")
    keys = {"provider": "ollama", "base_url": url, "model": "nomic-embed-text", "dimension": 64}
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(served_registry(tmp_path / "embedders.toml", **{"nomic@1": keys})))
    sqlite_harness.add_container("docs", corpus, embedder="nomic@1")
    result = sqlite_harness.sync("docs", raise_on_error=False)
    assert not result.success
    message = step_failure_message(result)
    assert "Failure: embedder nomic@1: POST " in message and "failed after 2 attempt(s): connection failed" in message
    assert "nothing of this call was cached" in message
    assert sqlite_harness.serving("docs") is None


def test_chunks_of_a_chunker_no_kept_generation_uses_are_pruned(sqlite_harness, corpus, tmp_path, monkeypatch):
    from ops_pipelines.kb import KnowledgeBase
    from ops_pipelines.maintenance import prune_chunks

    registry = tmp_path / "embedders.toml"
    registry.write_text(TOKEN_VERSION)
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(registry))
    harness = sqlite_harness
    harness.add_container("docs", corpus)
    harness.sync("docs")
    kb = KnowledgeBase(harness.kb_url)
    try:
        assert harness.refresh("docs", "hash-256-tokens@1").success  # retention 2: g1 (para-800@1) kept
        kept = {(r.chunker, r.action) for r in prune_chunks(kb).chunkers}
        assert kept == {("para-800@1", "kept: in use"), ("minilm-tokens-254@1", "kept: in use")}

        assert harness.refresh("docs", "hash-256-tokens@1", retention=1).success  # g1 and g2 dropped
        dry = prune_chunks(kb, dry_run=True)
        assert [(r.chunker, r.chunks, r.action) for r in dry.chunkers] == [
            ("minilm-tokens-254@1", 5, "kept: in use"), ("para-800@1", 5, "would delete")
        ]
        assert prune_chunks(kb).chunks_deleted == 5
        docs = kb.get_container("docs")
        assert kb.count_active_chunks(docs.id, "para-800@1") == 0
        assert kb.count_active_chunks(docs.id, "minilm-tokens-254@1") == 5
    finally:
        kb.close()
    sync = harness.sync("docs")  # nothing to cut again: the live chunker's chunks are all there
    assert harness.metadata(sync, "chunks")["documents_chunked"] == 0
    assert harness.metadata(sync, "live_collection")["points"] == 5


def test_a_shadow_built_alone_for_a_new_chunker_says_to_run_the_whole_refresh(sqlite_harness, corpus, tmp_path, monkeypatch):
    from dagster import materialize

    from ops_pipelines.defs.partitions import refresh_partition_key
    from ops_pipelines.defs.refresh.assets import shadow_collection
    from ops_pipelines_tests.conftest import step_failure_message

    registry = tmp_path / "embedders.toml"
    registry.write_text(TOKEN_VERSION)
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(registry))
    sqlite_harness.add_container("docs", corpus)
    sqlite_harness.sync("docs")
    sqlite_harness.instance.add_dynamic_partitions("embedder_versions", ["hash-256-tokens@1"])
    result = materialize(
        [shadow_collection], partition_key=refresh_partition_key("docs", "hash-256-tokens@1"),
        instance=sqlite_harness.instance, resources=sqlite_harness.resources(), raise_on_error=False,
    )
    assert "no chunks cut by minilm-tokens-254@1 yet: run the whole refresh_job" in step_failure_message(result)
    assert sqlite_harness.serving("docs") == "kb_docs__hash-256-1__g1"
