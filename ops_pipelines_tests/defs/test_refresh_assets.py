"""refresh_job and rollback_job under real Dagster execution: shadow build, blocking checks,
swap, rollback, in-place refresh, resume after a crash, clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.defs.partitions import refresh_partition_key
from ops_pipelines.defs.resources import VectorStoreResource
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.vectors import EdgeVectorStore, VectorStore
from ops_pipelines_tests.conftest import step_failure_message
from ops_pipelines_tests.defs.test_sync_assets import expected_point_ids, top_keys

G1 = "kb_docs__hash-256-1__g1"
G2 = "kb_docs__hash-256-1__g2"


@pytest.fixture
def synced(harness, corpus):
    harness.add_container("docs", corpus)
    harness.sync("docs")
    assert harness.serving("docs") == G1
    return harness


def container(harness, slug="docs"):
    kb = KnowledgeBase(harness.kb_url)
    try:
        return kb.get_container(slug), kb.generations(kb.get_container(slug).id)
    finally:
        kb.close()


def check_outcomes(result) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def materialized(result) -> list[str]:
    return sorted(e.asset_key.path[-1] for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION")


def test_shadow_refresh_builds_checks_and_swaps(synced, monkeypatch):
    from ops_pipelines.vectors.reconcile import ContentScan

    reads = []
    original = ContentScan.results
    monkeypatch.setattr(ContentScan, "results", lambda self: reads.append(self) or original(self))
    before = top_keys(synced, "docs", "glaciers and ice")
    result = synced.refresh("docs", "hash-256@1")
    assert result.success
    assert len(reads) == 1  # the swap trusts the checks that passed in the same run
    assert all(check_outcomes(result).values()) and len(check_outcomes(result)) == 7
    assert synced.serving("docs") == G2
    record, generations = container(synced)
    assert (record.active_generation, record.embedder_version) == (2, "hash-256@1")
    assert [(g.number, g.state) for g in generations] == [(1, "retired"), (2, "live")]
    swap = synced.metadata(result, "live_alias")
    assert (swap["collection"], swap["previous_collection"]) == (G2, G1)
    build = synced.metadata(result, "shadow_collection")
    assert (build["mode"], build["points"], build["upserted"]) == ("shadow", 5, 5)
    assert synced.metadata(result, "version_embeddings")["computed"] == 0  # all from the cache
    assert top_keys(synced, "docs", "glaciers and ice") == before


@pytest.mark.parametrize(
    "defect, failing",
    [
        ("drop_point", {"point_count", "point_ids", "self_retrieval"}),
        ("zero_vector", {"vector_values", "self_retrieval"}),
        ("wrong_dimension", {"vector_dimension", "self_retrieval"}),
        ("stale_payload", {"payload_hashes"}),
    ],
)
def test_a_defective_shadow_fails_its_check_and_is_never_swapped(synced, defect, failing):
    result = synced.refresh("docs", "hash-256@1", raise_on_error=False, vectors=DefectiveVectors(path=synced.qdrant_path, defect=defect))
    assert not result.success
    outcomes = check_outcomes(result)
    # retrieval_quality may fail too (a dropped or zeroed point loses its document's queries)
    assert {name for name, passed in outcomes.items() if not passed} - {"retrieval_quality"} == failing
    message = step_failure_message(result)  # the operator's words, not Dagster's blocking-check error
    assert "not swapping kb_docs to kb_docs__hash-256-1__g2: " in message
    assert all(f"{name}: " in message for name in failing)
    assert "run the refresh again (ops-pipelines refresh docs --embedder-version hash-256@1): it resumes" in message
    assert materialized(result) == ["shadow_collection", "version_embeddings"]  # no live_alias
    assert synced.serving("docs") == G1
    record, generations = container(synced)
    assert (record.active_generation, record.embedder_version) == (1, "hash-256@1")
    assert [(g.number, g.state) for g in generations] == [(1, "live"), (2, "building")]

    # The cause fixed, the same refresh resumes the shadow, repairs it and swaps.
    again = synced.refresh("docs", "hash-256@1")
    assert synced.metadata(again, "shadow_collection")["resumed"] is True
    assert again.success and synced.serving("docs") == G2
    with synced.vector_store() as store:
        assert store.collection_dimension(G2) == 256
        assert store.point_ids(G2) == expected_point_ids(synced.kb_url, "docs")


def test_live_alias_launched_alone_runs_the_checks_itself(synced):
    from dagster import AssetKey

    bad = DefectiveVectors(path=synced.qdrant_path, defect="drop_point")
    assert not synced.refresh("docs", "hash-256@1", raise_on_error=False, vectors=bad).success
    alone = synced.job("refresh_job").execute_in_process(
        instance=synced.instance,
        partition_key=refresh_partition_key("docs", "hash-256@1"),
        asset_selection=[AssetKey("live_alias")],
        raise_on_error=False,
    )
    assert not alone.success
    assert "not swapping kb_docs to kb_docs__hash-256-1__g2: point_count: 4 points, 5 active chunks" in step_failure_message(alone)
    assert synced.serving("docs") == G1


def test_rotation_to_another_dimension_then_rollback_and_retention(synced, extra_embedders):
    result = synced.refresh("docs", "hash-64@1")
    assert result.success
    assert synced.serving("docs") == "kb_docs__hash-64-1__g2"
    with synced.vector_store() as store:
        assert store.collection_dimension("kb_docs__hash-64-1__g2") == 64
    assert container(synced)[0].embedder_version == "hash-64@1"
    assert synced.sync("docs").success  # sync now keeps the 64-d generation up to date

    rolled = synced.rollback("docs")
    assert rolled.success
    assert synced.serving("docs") == G1
    record, generations = container(synced)
    assert (record.active_generation, record.embedder_version) == (1, "hash-256@1")
    assert [(g.number, g.state) for g in generations] == [(1, "live"), (2, "retired")]
    events = [e for e in rolled.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    # the rollback shows in live_alias's history, and live_collection names the collection served again
    assert [e.asset_key.path for e in events] == [["live_alias"], ["live_collection"]]

    # Two more refreshes with retention 2: only the live and the last served generation remain.
    synced.refresh("docs", "hash-256@2")
    synced.refresh("docs", "hash-256@2")
    _, generations = container(synced)
    assert [(g.number, g.state) for g in generations] == [
        (1, "dropped"), (2, "dropped"), (3, "retired"), (4, "live"),
    ]
    with synced.vector_store() as store:
        names = set(store.collection_names())
    assert names == {"kb_docs__hash-256-2__g3", "kb_docs__hash-256-2__g4"}


def test_rollback_with_nothing_retained_is_a_clear_error(synced):
    result = synced.rollback("docs", raise_on_error=False)
    assert not result.success
    assert "no retired generation to roll back to" in step_failure_message(result)
    assert synced.serving("docs") == G1


def test_in_place_refresh_rewrites_the_live_generation(synced, extra_embedders):
    result = synced.refresh("docs", "hash-256@2", mode="in_place")
    assert result.success
    assert synced.serving("docs") == G1  # same collection, rewritten
    assert synced.metadata(result, "shadow_collection")["upserted"] == 5
    record, generations = container(synced)
    assert record.embedder_version == "hash-256@2"
    assert [(g.number, g.state, g.embedder_version) for g in generations] == [(1, "live", "hash-256@2")]


def test_in_place_refresh_to_another_dimension_is_refused_naming_shadow(synced, extra_embedders):
    result = synced.refresh("docs", "hash-64@1", mode="in_place", raise_on_error=False)
    assert not result.success
    message = step_failure_message(result)
    assert "use --mode shadow / mode: shadow" in message and "256-d" in message and "64-d" in message
    assert synced.serving("docs") == G1
    assert container(synced)[0].embedder_version == "hash-256@1"
    with synced.vector_store() as store:
        assert store.collection_dimension(G1) == 256


def test_in_place_to_another_dimension_is_refused_before_any_model_time(synced, extra_embedders, monkeypatch):
    import ops_pipelines.defs.resources as resources

    loaded: list[str] = []
    real_load = resources.load_embedder
    monkeypatch.setattr(resources, "load_embedder", lambda name: loaded.append(name) or real_load(name))
    _, generations_before = container(synced)
    result = synced.refresh("docs", "hash-64@1", mode="in_place", raise_on_error=False)
    assert not result.success
    assert loaded == []  # no embedder was even loaded
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "version_embeddings"
    message = step_failure_message(result)
    assert "use --mode shadow / mode: shadow" in message and "256-d" in message and "64-d" in message
    assert materialized(result) == []
    record, generations_after = container(synced)
    assert record.embedder_version == "hash-256@1" and generations_after == generations_before
    kb = synced.kb()
    try:
        hashes = [row.content_hash for row in kb.active_chunks(record.id, PARA)]
        assert kb.get_embeddings("hash-64@1", hashes) == {}  # nothing computed, nothing cached
    finally:
        kb.close()
    assert synced.serving("docs") == G1
    with synced.vector_store() as store:
        assert store.collection_dimension(G1) == 256 and store.count(G1) == 5
    # The same refresh in shadow mode is not refused, and a same-dimension in_place still runs.
    assert synced.refresh("docs", "hash-256@2", mode="in_place").success
    assert loaded == ["hash-256@2"]


def test_a_shadow_built_without_its_embeddings_step_says_to_run_the_whole_refresh(synced, extra_embedders):
    """shadow_collection launched alone (say, from the asset graph) for a version nothing embedded:
    no sync ran, so the error says to run the refresh, embeddings step first."""
    from dagster import materialize

    from ops_pipelines.defs.refresh.assets import shadow_collection

    synced.instance.add_dynamic_partitions("embedder_versions", ["hash-64@1"])
    result = materialize(
        [shadow_collection], partition_key=refresh_partition_key("docs", "hash-64@1"), instance=synced.instance,
        resources=synced.resources(), raise_on_error=False,
    )
    message = step_failure_message(result)
    assert "5 chunk(s) of 'docs' have no hash-64@1 vector in the embedding cache" in message
    assert "run the whole refresh (ops-pipelines refresh docs --embedder-version hash-64@1)" in message
    assert "a sync" not in message
    assert synced.serving("docs") == G1


def test_a_run_killed_mid_build_resumes_without_duplicates(synced):
    crash = DefectiveVectors(path=synced.qdrant_path, defect="crash_mid_build")
    killed = synced.refresh("docs", "hash-256@1", raise_on_error=False, vectors=crash)
    assert not killed.success
    with synced.vector_store() as store:
        assert 0 < store.count(G2) < 5
    # The half-built shadow is invisible: search still goes to the old generation.
    assert synced.serving("docs") == G1
    assert top_keys(synced, "docs", "glaciers and ice")[0] == "gamma.md"
    result = synced.refresh("docs", "hash-256@1")
    build = synced.metadata(result, "shadow_collection")
    assert build["resumed"] is True and build["generation"] == 2 and build["points"] == 5
    with synced.vector_store() as store:
        assert store.point_ids(G2) == expected_point_ids(synced.kb_url, "docs")
    assert synced.serving("docs") == G2


def test_a_run_killed_after_the_build_checks_and_swaps_on_rerun(synced):
    crash = DefectiveVectors(path=synced.qdrant_path, defect="crash_in_checks")
    killed = synced.refresh("docs", "hash-256@1", raise_on_error=False, vectors=crash)
    assert not killed.success
    assert materialized(killed) == ["shadow_collection", "version_embeddings"]
    assert synced.serving("docs") == G1
    result = synced.refresh("docs", "hash-256@1")
    build = synced.metadata(result, "shadow_collection")
    assert (build["resumed"], build["upserted"], build["points"]) == (True, 0, 5)
    assert all(check_outcomes(result).values())
    assert synced.serving("docs") == G2


def test_refresh_of_a_container_without_chunks_is_a_clear_error(harness, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    harness.add_container("bare", empty)
    result = harness.refresh("bare", "hash-256@1", raise_on_error=False)
    assert not result.success
    assert "has no active chunks" in step_failure_message(result) and "sync_job" in step_failure_message(result)


def test_refresh_of_an_unknown_container_is_a_clear_error(harness):
    harness.instance.add_dynamic_partitions("containers", ["ghost"])
    result = harness.refresh("ghost", "hash-256@1", raise_on_error=False)
    assert not result.success
    assert "container 'ghost' does not exist" in step_failure_message(result)


# ---- fault injection --------------------------------------------------------------------


class DefectiveVectors(VectorStoreResource):
    """Qdrant Edge whose shadow writes go wrong in one chosen way (tests only)."""

    defect: str

    @contextmanager
    def open(self) -> Iterator[VectorStore]:
        store = _DefectiveStore(self.path, self.defect)
        try:
            yield store
        finally:
            store.close()


class _DefectiveStore(EdgeVectorStore):
    def __init__(self, path: str, defect: str):
        super().__init__(path)
        self.defect = defect

    def ensure_collection(self, name: str, dimension: int, hybrid: bool = False) -> bool:
        return super().ensure_collection(name, dimension + 8 if self.defect == "wrong_dimension" else dimension, hybrid)

    def upsert(self, collection, ids, vectors, payloads):
        ids, vectors, payloads = list(ids), np.array(vectors, dtype=np.float32), list(payloads)
        if self.defect == "drop_point":
            ids, vectors, payloads = ids[1:], vectors[1:], payloads[1:]
        elif self.defect == "zero_vector":
            vectors[0] = 0.0
        elif self.defect == "wrong_dimension":
            vectors = np.pad(vectors, ((0, 0), (0, 8)), constant_values=0.01)
        elif self.defect == "stale_payload":
            payloads[0] = dict(payloads[0], chunk_hash="0" * 64)
        elif self.defect == "crash_mid_build":
            super().upsert(collection, ids[:2], vectors[:2], payloads[:2])
            raise ConnectionError("simulated: the run died mid-build")
        super().upsert(collection, ids, vectors, payloads)

    def pages(self, collection, with_payload=False, with_vectors=False, page=4096):
        if self.defect == "crash_in_checks" and with_vectors:  # the checks' read of the points
            raise ConnectionError("simulated: the run died after the build")
        return super().pages(collection, with_payload, with_vectors, page)
