"""The source-change sensor and the periodic schedule, evaluated for real."""

from __future__ import annotations

import datetime as dt
import json
import os
from contextlib import closing

from dagster import DeleteDynamicPartitionsRequest, RunsFilter, build_schedule_context, build_sensor_context
from dagster._core.storage.tags import RUN_KEY_TAG

from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.resources import KnowledgeBaseResource
from ops_pipelines.defs.sync.schedules import sync_schedule
from ops_pipelines.defs.sync.sensors import source_change_sensor
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.kb.clock import utcnow


def evaluate(instance, kb_url, cursor=None):
    with build_sensor_context(
        instance=instance, cursor=cursor, resources={"kb": KnowledgeBaseResource(url=kb_url)}
    ) as context:
        return source_change_sensor(context)


def scheduled(harness) -> list:
    """The run requests of one sync_schedule tick."""
    with build_schedule_context(
        instance=harness.instance, resources={"kb": KnowledgeBaseResource(url=harness.kb_url)},
        scheduled_execution_time=dt.datetime(2026, 11, 23, 6, tzinfo=dt.timezone.utc),
    ) as context:
        return list(sync_schedule(context))


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
    requests = scheduled(sqlite_harness)
    assert sorted(r.partition_key for r in requests) == ["one", "two"]
    assert len({r.run_key for r in requests}) == 2


def launch(harness, request, raise_on_error: bool = True):
    """Run a sensor's request as the daemon would: sync_job for its partition, with its tags and
    its run key (a run key is launched once: the daemon skips a request whose key a run has)."""
    assert not harness.instance.get_runs(RunsFilter(tags={RUN_KEY_TAG: request.run_key})), (
        f"run key {request.run_key} was used before: Dagster would never launch this request"
    )
    return harness.job("sync_job").execute_in_process(
        instance=harness.instance,
        partition_key=request.partition_key,
        tags={**request.tags, RUN_KEY_TAG: request.run_key},
        raise_on_error=raise_on_error,
    )


def test_a_source_that_changes_back_is_synced_back(sqlite_harness, corpus):
    """A -> B -> A: the third state's fingerprint is the first one's, its run key must not be."""
    sqlite_harness.add_container("one", corpus)
    beta = corpus / "beta.md"
    text_a, stat_a = beta.read_text(), beta.stat()

    looked = evaluate(sqlite_harness.instance, sqlite_harness.kb_url)
    (first,) = looked.run_requests
    assert launch(sqlite_harness, first).success
    quiet = evaluate(sqlite_harness.instance, sqlite_harness.kb_url, looked.cursor)
    assert quiet.run_requests == []  # synced: nothing to do

    beta.write_text("# Beta\n\nBeta is about bees now, and hives.")
    changed = evaluate(sqlite_harness.instance, sqlite_harness.kb_url, quiet.cursor)
    (to_b,) = changed.run_requests
    assert launch(sqlite_harness, to_b).success

    beta.write_text(text_a)  # back to A: same names, sizes and mtimes, so the same fingerprint
    os.utime(beta, ns=(stat_a.st_atime_ns, stat_a.st_mtime_ns))
    back = evaluate(sqlite_harness.instance, sqlite_harness.kb_url, changed.cursor)
    (to_a,) = back.run_requests
    assert json.loads(back.cursor)["one"]["fingerprint"] == json.loads(quiet.cursor)["one"]["fingerprint"]
    assert launch(sqlite_harness, to_a).success  # a run key never used: the daemon launches it
    with closing(sqlite_harness.kb()) as kb:
        assert [c.text for c in kb.active_chunks(kb.get_container("one").id, PARA) if c.source_key == "beta.md"] == [
            "# Beta\n\nBeta explains bicycles, gears and chains."
        ]
    assert evaluate(sqlite_harness.instance, sqlite_harness.kb_url, back.cursor).run_requests == []


def test_a_sync_that_failed_for_another_reason_than_its_source_is_retried(sqlite_harness, corpus, monkeypatch):
    """The sync fails because another process holds the container's lease: nothing is wrong with
    the source and its fingerprint does not change, yet the sensor retries, with a growing delay."""
    from ops_pipelines_tests.defs.test_leases import hold

    monkeypatch.setenv("OPS_LEASE_WAIT_SECONDS", "0.5")
    docs = sqlite_harness.add_container("docs", corpus)
    (first,) = (result := evaluate(sqlite_harness.instance, sqlite_harness.kb_url)).run_requests
    holder = hold(sqlite_harness.kb_url, docs.id, "run-of-someone-else")
    try:
        assert not launch(sqlite_harness, first, raise_on_error=False).success
        (retry,) = (result := evaluate(sqlite_harness.instance, sqlite_harness.kb_url, result.cursor)).run_requests
        assert retry.run_key != first.run_key
        assert not launch(sqlite_harness, retry, raise_on_error=False).success  # still held
        # the second retry waits a minute after the failure (then 2, 4, ... up to an hour)
        assert evaluate(sqlite_harness.instance, sqlite_harness.kb_url, result.cursor).run_requests == []
    finally:
        holder.stdin.close()
        holder.wait(30)
    later = utcnow() + dt.timedelta(seconds=61)
    monkeypatch.setattr("ops_pipelines.defs.sync.sensors.utcnow", lambda: later)
    (again,) = (result := evaluate(sqlite_harness.instance, sqlite_harness.kb_url, result.cursor)).run_requests
    assert launch(sqlite_harness, again).success
    assert evaluate(sqlite_harness.instance, sqlite_harness.kb_url, result.cursor).run_requests == []  # in step


def test_a_request_waits_for_its_run_and_is_made_again_if_the_run_is_gone(sqlite_harness, corpus, monkeypatch):
    sqlite_harness.add_container("docs", corpus)
    first = evaluate(sqlite_harness.instance, sqlite_harness.kb_url)
    assert evaluate(sqlite_harness.instance, sqlite_harness.kb_url, first.cursor).run_requests == []  # not launched yet
    later = utcnow() + dt.timedelta(minutes=11)  # no run ever came of it (deleted from the UI?)
    monkeypatch.setattr("ops_pipelines.defs.sync.sensors.utcnow", lambda: later)
    (again,) = evaluate(sqlite_harness.instance, sqlite_harness.kb_url, first.cursor).run_requests
    assert again.run_key != first.run_requests[0].run_key


def test_sensor_removes_the_partitions_of_containers_that_are_gone(sqlite_harness, corpus):
    sqlite_harness.add_container("docs", corpus)
    sqlite_harness.instance.add_dynamic_partitions(containers_partitions.name, ["ghost"])  # no such container
    result = evaluate(sqlite_harness.instance, sqlite_harness.kb_url)
    (request,) = result.dynamic_partitions_requests
    assert isinstance(request, DeleteDynamicPartitionsRequest)
    assert (request.partitions_def_name, request.partition_keys) == (containers_partitions.name, ["ghost"])
    assert [r.partition_key for r in result.run_requests] == ["docs"]


def test_sensor_removes_no_partition_when_the_knowledge_base_has_no_container(sqlite_harness, corpus):
    """An empty knowledge base is more likely a wrong OPS_KB_URL than every container removed."""
    sqlite_harness.instance.add_dynamic_partitions(containers_partitions.name, ["docs", "wiki"])
    assert evaluate(sqlite_harness.instance, sqlite_harness.kb_url).dynamic_partitions_requests == []


def test_schedule_skips_partitions_without_a_container(sqlite_harness, corpus):
    sqlite_harness.add_container("one", corpus)
    sqlite_harness.instance.add_dynamic_partitions(containers_partitions.name, ["ghost"])
    assert [r.partition_key for r in scheduled(sqlite_harness)] == ["one"]
