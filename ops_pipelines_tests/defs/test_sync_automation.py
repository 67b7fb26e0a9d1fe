"""The source-change sensor and the periodic schedule, evaluated for real."""

from __future__ import annotations

import datetime as dt
import json

from dagster import build_schedule_context, build_sensor_context

from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.resources import KnowledgeBaseResource
from ops_pipelines.defs.sync.schedules import sync_schedule
from ops_pipelines.defs.sync.sensors import source_change_sensor
from ops_pipelines.kb import KnowledgeBase


def evaluate(instance, kb_url, cursor=None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"kb": KnowledgeBaseResource(url=kb_url)}
    )
    return source_change_sensor(context)


def test_sensor_requests_a_run_only_when_a_source_changed(sqlite_harness, corpus, tmp_path):
    sqlite_harness.add_container("one", corpus)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.md").write_text("x")
    sqlite_harness.add_container("two", other)
    instance = sqlite_harness.instance

    first = evaluate(instance, sqlite_harness.kb_url)
    assert sorted(r.partition_key for r in first.run_requests) == ["one", "two"]
    assert all(r.tags["ops/container"] == r.partition_key for r in first.run_requests)

    quiet = evaluate(instance, sqlite_harness.kb_url, first.cursor)
    assert quiet.run_requests == []
    assert quiet.cursor == first.cursor

    (corpus / "alpha.md").write_text("# Alpha\n\nRewritten.")
    changed = evaluate(instance, sqlite_harness.kb_url, quiet.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["one"]
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key
    assert json.loads(changed.cursor)["two"] == json.loads(first.cursor)["two"]


def test_sensor_skips_a_source_that_is_down_and_registers_missing_partitions(sqlite_harness, tmp_path, corpus):
    kb = KnowledgeBase(sqlite_harness.kb_url)
    try:
        kb.add_container("orphan", "folder", str(corpus), "hash-256@1")  # in the KB, not in Dagster
        kb.add_container("down", "folder", str(tmp_path / "unmounted"), "hash-256@1")
    finally:
        kb.close()
    result = evaluate(sqlite_harness.instance, sqlite_harness.kb_url)
    assert [r.partition_key for r in result.run_requests] == ["orphan"]
    (request,) = result.dynamic_partitions_requests
    assert request.partitions_def_name == containers_partitions.name
    assert sorted(request.partition_keys) == ["down", "orphan"]
    assert "down" not in json.loads(result.cursor)


def test_schedule_requests_every_container(sqlite_harness, corpus):
    sqlite_harness.add_container("one", corpus)
    sqlite_harness.add_container("two", corpus)
    context = build_schedule_context(
        instance=sqlite_harness.instance,
        scheduled_execution_time=dt.datetime(2026, 11, 23, 6, tzinfo=dt.timezone.utc),
    )
    requests = list(sync_schedule(context))
    assert sorted(r.partition_key for r in requests) == ["one", "two"]
    assert len({r.run_key for r in requests}) == 2
