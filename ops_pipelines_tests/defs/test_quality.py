"""retrieval_eval, its sensor and its schedule under real Dagster execution."""

from __future__ import annotations

from datetime import datetime

from dagster import build_schedule_context, build_sensor_context, materialize

from ops_pipelines.defs.quality.assets import retrieval_eval
from ops_pipelines.defs.quality.jobs import retrieval_eval_schedule, retrieval_eval_sensor
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.quality import register_golden_set
from ops_pipelines_tests.conftest import step_failure_message
from ops_pipelines_tests.quality.test_evaluate import GOLDEN


def evaluate(harness, slug: str = "docs", raise_on_error: bool = True):
    return materialize([retrieval_eval], partition_key=slug, instance=harness.instance,
                       resources=harness.resources(), raise_on_error=raise_on_error)


def test_retrieval_eval_reports_the_figures_as_numbers(sqlite_harness, corpus):
    sqlite_harness.add_container("docs", corpus)
    sqlite_harness.sync("docs")
    synthetic = sqlite_harness.metadata(evaluate(sqlite_harness), "retrieval_eval")
    assert synthetic["synthetic"] is True and synthetic["golden_set"] == "synthetic golden set (5 document titles)"
    kb = KnowledgeBase(sqlite_harness.kb_url)
    try:
        register_golden_set(kb, kb.get_container("docs"), GOLDEN, "golden.jsonl")
    finally:
        kb.close()
    metadata = sqlite_harness.metadata(evaluate(sqlite_harness), "retrieval_eval")
    assert metadata["synthetic"] is False and metadata["golden_set"].endswith("(4 queries)")
    assert all(isinstance(metadata[m], float) for m in ("recall@10", "mrr@10", "ndcg@10"))
    assert metadata["recall@10"] == 1.0 and (metadata["generation"], metadata["embedder_version"]) == (1, "hash-256@1")
    assert [r.data["query_id"] for r in metadata["queries"].records] == ["apples", "bikes", "ice", "none"]


def test_a_container_not_synced_has_nothing_to_evaluate(sqlite_harness, corpus):
    sqlite_harness.add_container("docs", corpus)
    result = evaluate(sqlite_harness, raise_on_error=False)
    assert "has no live generation to evaluate yet: sync it first (ops-pipelines sync docs)" in step_failure_message(result)


def test_the_sensor_asks_for_an_evaluation_after_each_sync_and_swap(sqlite_harness, corpus, extra_embedders):
    harness = sqlite_harness
    harness.add_container("docs", corpus)
    harness.add_container("other", corpus)
    harness.sync("docs")

    def tick(cursor):
        return retrieval_eval_sensor(build_sensor_context(instance=harness.instance, cursor=cursor))

    first = tick(None)
    assert first.run_requests == [] and first.cursor  # history before the sensor is not evaluated
    assert tick(first.cursor).run_requests == []
    harness.sync("other")
    after_sync = tick(first.cursor)
    assert [(r.partition_key, r.run_key.split(":")[0]) for r in after_sync.run_requests] == [("other", "other")]
    harness.refresh("docs", "hash-256@2")
    after_swap = tick(after_sync.cursor)
    assert [r.partition_key for r in after_swap.run_requests] == ["docs"]
    assert tick(after_swap.cursor).run_requests == []


def test_the_schedule_evaluates_every_container(sqlite_harness, corpus):
    sqlite_harness.add_container("docs", corpus)
    sqlite_harness.add_container("other", corpus)
    context = build_schedule_context(instance=sqlite_harness.instance, scheduled_execution_time=datetime(2026, 12, 7, 4))
    assert sorted(r.partition_key for r in retrieval_eval_schedule(context)) == ["docs", "other"]
