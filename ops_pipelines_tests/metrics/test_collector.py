"""The metrics collector on real parts: a knowledge base on SQLite and on PostgreSQL synced by the
real sync assets (Qdrant Edge, the folder object store), the real backup job, and runs executed by
Dagster on a test instance."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from dagster import asset, materialize
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ops_pipelines.cli.metrics import DagsterRuns, backup_rpo_seconds, build_collector
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.metrics import is_retry_key

ASSET_JOB = "__ephemeral_asset_job__"  # the job of the runs of assets materialized directly (the harness syncs)


def scrape(collector) -> tuple[str, dict]:
    """The exposition text, and {(name, frozenset(labels)): value}."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def settings_env(monkeypatch):
    """This process's settings at the harness's knowledge base, Qdrant folder and object store."""

    def point_at(harness):
        monkeypatch.setenv("OPS_KB_URL", harness.kb_url)
        monkeypatch.setenv("OPS_QDRANT_PATH", harness.qdrant_path)
        monkeypatch.setenv("OPS_OBJECTS_DIR", str(harness.home / "objects"))
        for name in ("OPS_QDRANT_URL", "OPS_S3_ENDPOINT", "OPS_SYNC_MAX_AGE_HOURS", "OPS_BACKUP_CRON"):
            monkeypatch.delenv(name, raising=False)

    return point_at


def test_a_synced_container(harness, corpus, settings_env):
    settings_env(harness)
    harness.add_container("docs", corpus)
    assert harness.sync("docs").success
    (corpus / "beta.md").unlink()
    assert harness.sync("docs").success  # one document archived
    kb = harness.kb()
    try:
        container = kb.get_container("docs")
        live = kb.live_generation(container.id)
        chunks = kb.count_active_chunks(container.id, _chunker(live.embedder_version))
    finally:
        kb.close()
    collector = build_collector(harness.instance)
    try:
        text, samples = scrape(collector)
    finally:
        collector.close()

    assert value(samples, "ops_container_documents", container="docs", status="active") == 4
    assert value(samples, "ops_container_documents", container="docs", status="archived") == 1
    assert chunks > 0
    assert value(samples, "ops_container_active_chunks", container="docs") == chunks
    assert value(samples, "ops_container_points", container="docs") == chunks
    assert value(samples, "ops_vector_store_readable", container="docs") == 1
    assert value(samples, "ops_container_serving_ok", container="docs") == 1
    assert value(samples, "ops_container_live_info", container="docs", embedder_version="hash-256@1",
                 collection=live.collection, generation=str(live.number)) == 1
    assert value(samples, "ops_container_live_generation", container="docs") == live.number
    assert value(samples, "ops_container_last_sync_timestamp_seconds", container="docs") == pytest.approx(
        container.last_synced_at.timestamp())
    assert value(samples, "ops_container_sync_max_age_seconds", container="docs") == 24 * 3600
    assert value(samples, "ops_container_breaker_state", container="docs") == 0
    assert value(samples, "ops_container_source_failures", container="docs") == 0
    assert value(samples, "ops_container_being_written", container="docs") == 0
    assert value(samples, "ops_backup_last_success_timestamp_seconds") == 0  # no backup yet
    assert value(samples, "ops_backup_rpo_seconds") == 86400
    assert value(samples, "ops_dagster_runs_recent", dagster_job=ASSET_JOB, status="SUCCESS") == 2
    for source in ("knowledge_base", "vector_store", "object_store", "dagster"):
        assert value(samples, "ops_metrics_source_up", source=source) == 1
    for component in ("metadata_db", "qdrant", "serving", "object_store", "dagster_instance", "sync_freshness"):
        assert value(samples, "ops_health_up", component=component) == 1, component
    assert value(samples, "ops_health_up", component="embedders") is None  # not probed unless asked
    # Nothing of the documents, the source or the database's address is in the output.
    for leak in ("Alpha", "apples", "Gamma", "glaciers", str(corpus), harness.kb_url, "127.0.0.1"):
        assert leak not in text, leak


def _chunker(version: str) -> str:
    from ops_pipelines.embedders import get_version

    return get_version(version).chunker


def test_an_open_then_half_open_breaker_and_a_backup(sqlite_harness, corpus, settings_env):
    harness = sqlite_harness
    settings_env(harness)
    harness.add_container("docs", corpus)
    assert harness.sync("docs").success
    harness.open_breaker("docs", "connection refused by host", utcnow() + timedelta(minutes=15))
    backup = harness.job("backup_job").execute_in_process(instance=harness.instance)
    assert backup.success
    collector = build_collector(harness.instance)
    try:
        text, samples = scrape(collector)
        assert value(samples, "ops_container_breaker_state", container="docs") == 1
        assert value(samples, "ops_container_source_failures", container="docs") == 3
        assert "connection refused" not in text
        started = harness.instance.get_run_by_id(backup.run_id)
        at = value(samples, "ops_backup_last_success_timestamp_seconds")
        record = harness.instance.get_run_record_by_id(started.run_id)
        assert record.start_time - 2 <= at <= record.end_time + 1  # the backup key's time (whole seconds)

        kb = harness.kb()
        try:
            kb.open_breaker(kb.get_container("docs").id, utcnow() - timedelta(seconds=1))  # cool-down over
        finally:
            kb.close()
        _, samples = scrape(collector)
        assert value(samples, "ops_container_breaker_state", container="docs") == 2
    finally:
        collector.close()


def test_a_failed_run_its_step_and_a_sync_retry(sqlite_harness, tmp_path, corpus, settings_env):
    harness = sqlite_harness
    settings_env(harness)
    harness.add_container("gone", tmp_path / "unmounted")
    failed = harness.sync("gone", raise_on_error=False)
    assert not failed.success
    harness.add_container("docs", corpus)
    from ops_pipelines.defs.sync.assets import sync_assets

    retried = materialize(
        sync_assets, partition_key="docs", instance=harness.instance, resources=harness.resources(),
        tags={"dagster/run_key": "docs:never:abc123:retry-2", "ops/container": "docs"},
    )
    assert retried.success

    stats = DagsterRuns(harness.instance, window_s=3600, stuck_after_s=3600)()
    assert stats.recent == {(ASSET_JOB, "FAILURE"): 1, (ASSET_JOB, "SUCCESS"): 1}
    assert stats.step_failures == {(ASSET_JOB, "source_documents"): 1}
    assert stats.sync_retries == {"docs": 1}
    assert stats.unfinished == {} and stats.stuck == {}

    collector = build_collector(harness.instance)
    try:
        _, samples = scrape(collector)
    finally:
        collector.close()
    assert value(samples, "ops_dagster_runs_recent", dagster_job=ASSET_JOB, status="FAILURE") == 1
    assert value(samples, "ops_dagster_step_failures", dagster_job=ASSET_JOB, step="source_documents") == 1
    assert value(samples, "ops_container_sync_retries", container="docs") == 1
    assert value(samples, "ops_container_last_sync_timestamp_seconds", container="gone") == 0  # never synced
    # Out of the window (an hour from now, with a window of 30 minutes): not counted.
    later = DagsterRuns(harness.instance, window_s=1800, stuck_after_s=3600, clock=lambda: time.time() + 3600)()
    assert later.recent == {} and later.step_failures == {}


def test_a_run_running_past_the_timeout_is_stuck(sqlite_harness):
    release = threading.Event()

    @asset
    def slow_step():
        if not release.wait(60):
            raise TimeoutError("the test never released the step")

    instance = sqlite_harness.instance
    results = []
    thread = threading.Thread(target=lambda: results.append(materialize([slow_step], instance=instance)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while (ASSET_JOB, "STARTED") not in (stats := DagsterRuns(instance, 3600, 3600)()).unfinished:
            assert time.monotonic() < deadline, f"the run never started: {stats.unfinished}"
            time.sleep(0.05)
        assert stats.unfinished == {(ASSET_JOB, "STARTED"): 1}
        assert stats.stuck == {}
        later = DagsterRuns(instance, 3600, 3600, clock=lambda: time.time() + 2 * 3600)()
        assert later.stuck == {ASSET_JOB: 1}
        assert later.oldest_running_s > 2 * 3600 - 60
    finally:
        release.set()
        thread.join(60)
    assert results and results[0].success


def test_a_collection_held_by_another_process_is_reported_not_waited_for(sqlite_harness, corpus, settings_env):
    harness = sqlite_harness
    settings_env(harness)
    harness.add_container("docs", corpus)
    assert harness.sync("docs").success
    kb = harness.kb()
    try:
        collection = kb.live_generation(kb.get_container("docs").id).collection
    finally:
        kb.close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from ops_pipelines.vectors import EdgeVectorStore\n"
         f"s = EdgeVectorStore({harness.qdrant_path!r}); s.count({collection!r}); print('held', flush=True)\n"
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        collector = build_collector(harness.instance)
        try:
            started = time.monotonic()
            _, samples = scrape(collector)
            assert time.monotonic() - started < 10
        finally:
            collector.close()
        assert value(samples, "ops_vector_store_readable", container="docs") == 0
        assert value(samples, "ops_container_points", container="docs") is None
        assert value(samples, "ops_container_active_chunks", container="docs") > 0
        assert value(samples, "ops_metrics_source_up", source="knowledge_base") == 1
    finally:
        holder.stdin.close()
        holder.wait(30)


def test_the_rpo_is_the_longest_gap_of_the_backup_cron():
    assert backup_rpo_seconds("0 2 * * *") == 86400
    assert backup_rpo_seconds("0 3 * * 0") == 7 * 86400
    assert backup_rpo_seconds("*/15 * * * *") == 900
    assert backup_rpo_seconds("0 2 * * 1-5") == 3 * 86400  # Friday to Monday


def test_retry_run_keys():
    assert is_retry_key("docs:2026-12-07T10:00:00+00:00:abc:retry-1")
    assert is_retry_key("docs:never:abc:retry-12~2")
    assert is_retry_key("docs:retry:3:2026-12-07T10:00:00+00:00")
    assert not is_retry_key("docs:never:abc")
    assert not is_retry_key(None)
