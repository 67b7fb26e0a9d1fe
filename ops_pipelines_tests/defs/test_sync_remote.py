"""Sync of remote sources with real Dagster execution against real local servers: a Redmine
(incremental, full reconciliation, secrets), web pages (conditional GETs), the circuit breaker
across runs, and the change sensor."""

from __future__ import annotations

import json
import logging
from contextlib import closing
from datetime import timedelta

from click.testing import CliRunner
from dagster import build_sensor_context

from ops_pipelines.cli import main
from ops_pipelines.defs.resources import KnowledgeBaseResource
from ops_pipelines.defs.sync.sensors import source_change_sensor
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.sources import PagesSource, RedmineSource
from ops_pipelines_tests.conftest import step_failure_message


def redmine_location(server) -> str:
    return RedmineSource.normalize_location(f"{server.url}?projects=ops&wiki=1")


def everything_said(harness, result, caplog) -> str:
    """Every text the run left: Python logs, the Dagster event log, materialization metadata."""
    events = "\n".join(repr(e) for e in harness.instance.all_logs(result.run_id))
    metadata = "\n".join(
        f"{k}={v.value!r}"
        for event in result.all_events
        if event.is_step_materialization
        for k, v in event.step_materialization_data.materialization.metadata.items()
    )
    return f"{caplog.text}\n{events}\n{metadata}"


def evaluate_sensor(harness, cursor=None):
    with build_sensor_context(
        instance=harness.instance, cursor=cursor, resources={"kb": KnowledgeBaseResource(url=harness.kb_url)}
    ) as context:
        return source_change_sensor(context)


def test_redmine_full_then_incremental_then_reconciliation(harness, redmine, redmine_key, caplog):
    harness.add_container("ops", redmine_location(redmine), kind="redmine")
    redmine.fail("status", status=429, retry_after="0")  # the run survives both
    redmine.fail("drop")
    with caplog.at_level(logging.DEBUG):
        first = harness.sync("ops")
    docs = harness.metadata(first, "source_documents")
    assert docs["mode"] == "full" and harness.counts(first)["inserted"] == 4
    assert docs["source_state"] == {"issues_updated_on": {"ops": "2026-03-01T08:04:00Z"}}
    points = harness.metadata(first, "live_collection")["points"]
    assert points == harness.metadata(first, "chunks")["active_chunks"] > 0
    said = everything_said(harness, first, caplog)
    assert "HTTP 429" in said and "connection failed" in said  # the retries are in the run's log
    assert redmine_key not in said

    redmine.add_note(101, "Freed 20 GB on the backup volume.")
    redmine.delete_issue(102)
    redmine.reset_log()
    second = harness.sync("ops")  # auto: a full pass was just made, so incremental
    assert harness.metadata(second, "source_documents")["mode"] == "incremental"
    # skipped: #103 (listed again at the cursor's own updated_on, not fetched) and the wiki page
    assert harness.counts(second) == {"inserted": 0, "updated": 1, "skipped": 2, "archived": 0, "unarchived": 0,
                                      "failed": 0}
    assert sorted(r.path for r in redmine.requests if r.path.startswith("/issues/")) == ["/issues/101.json"]
    assert harness.metadata(second, "embeddings")["computed"] > 0

    third = harness.sync("ops", mode="full")
    assert harness.counts(third)["archived"] == 1
    with closing(harness.kb()) as kb:
        container = kb.get_container("ops")
        assert kb.document_states(container.id)["issues/102"].status == "archived"
        assert kb.count_documents(container.id) == {"active": 3, "archived": 1}
    assert harness.metadata(third, "live_collection")["deleted"] > 0
    for run in (second, third):
        assert redmine_key not in everything_said(harness, run, caplog)


def test_a_wrong_key_fails_the_run_without_showing_any_key(sqlite_harness, redmine, monkeypatch, caplog):
    sqlite_harness.add_container("ops", redmine_location(redmine), kind="redmine")
    monkeypatch.setenv("OPS_REDMINE_API_KEY", "wrong-key-4242")
    with caplog.at_level(logging.DEBUG):
        result = sqlite_harness.sync("ops", raise_on_error=False)
    assert not result.success
    message = step_failure_message(result)
    assert "rejected the API key in OPS_REDMINE_API_KEY (HTTP 401)" in message
    said = everything_said(sqlite_harness, result, caplog)
    assert "wrong-key-4242" not in said and redmine.api_key not in said


def test_circuit_breaker_opens_fails_fast_skips_the_sensor_and_closes(sqlite_harness, redmine, monkeypatch):
    monkeypatch.setenv("OPS_SOURCE_BREAKER_FAILURES", "2")
    monkeypatch.setenv("OPS_SOURCE_BREAKER_COOLDOWN_S", "600")
    harness = sqlite_harness
    harness.add_container("ops", redmine_location(redmine), kind="redmine")
    assert harness.sync("ops").success
    quiet = evaluate_sensor(harness)
    assert [r.partition_key for r in quiet.run_requests] == ["ops"]  # first look: a fingerprint to remember

    redmine.fail("status", times=1000, status=500)
    failed = harness.sync("ops", raise_on_error=False)
    assert "failed after 4 attempt(s): HTTP 500" in step_failure_message(failed)
    retry = evaluate_sensor(harness, quiet.cursor)
    (request,) = retry.run_requests  # the failed sync is retried, fingerprint or not
    assert request.run_key.startswith("ops:retry:1:")

    opened = harness.sync("ops", raise_on_error=False)
    assert "failure 2 in a row: the circuit breaker is open until" in step_failure_message(opened)
    with closing(harness.kb()) as kb:
        container = kb.get_container("ops")
        assert kb.count_documents(container.id) == {"active": 4, "archived": 0}  # a failing source archives nothing

    redmine.reset_log()
    fast = harness.sync("ops", raise_on_error=False)
    message = step_failure_message(fast)
    assert "circuit breaker open for container 'ops'" in message and "ops-pipelines source reset ops" in message
    assert redmine.requests == []  # failed fast: not one request
    skipped = evaluate_sensor(harness, quiet.cursor)
    assert skipped.run_requests == [] and redmine.requests == []  # the sensor neither probes nor requests

    with closing(harness.kb()) as kb:  # the cool-down is over: half-open
        kb.open_breaker(container.id, utcnow() - timedelta(seconds=1))
    trial = evaluate_sensor(harness, quiet.cursor)
    (request,) = trial.run_requests
    assert request.run_key.startswith("ops:retry:2:")
    redmine.clear_faults()
    assert harness.sync("ops").success
    with closing(harness.kb()) as kb:
        state = kb.source_state(container.id)
        assert (state.failures, state.opened_until, state.last_error) == (0, None, None)
    assert evaluate_sensor(harness, quiet.cursor).run_requests == []  # closed, and nothing changed


def test_a_trial_that_fails_opens_the_breaker_again(sqlite_harness, redmine, monkeypatch):
    monkeypatch.setenv("OPS_SOURCE_BREAKER_FAILURES", "1")
    sqlite_harness.add_container("ops", redmine_location(redmine), kind="redmine")
    redmine.fail("drop", times=1000)
    assert "circuit breaker is open" in step_failure_message(sqlite_harness.sync("ops", raise_on_error=False))
    with closing(sqlite_harness.kb()) as kb:
        container = kb.get_container("ops")
        kb.open_breaker(container.id, utcnow() - timedelta(seconds=1))
    trial = sqlite_harness.sync("ops", raise_on_error=False)
    assert "failure 2 in a row: the circuit breaker is open until" in step_failure_message(trial)
    with closing(sqlite_harness.kb()) as kb:
        assert kb.source_state(container.id).opened_until > utcnow()


def test_source_status_and_reset_commands(sqlite_harness, redmine, monkeypatch):
    monkeypatch.setenv("OPS_KB_URL", sqlite_harness.kb_url)
    monkeypatch.setenv("OPS_SOURCE_BREAKER_FAILURES", "1")
    sqlite_harness.add_container("ops", redmine_location(redmine), kind="redmine")
    assert sqlite_harness.sync("ops").success
    redmine.fail("status", times=1000, status=503)
    sqlite_harness.sync("ops", raise_on_error=False)

    out = CliRunner().invoke(main, ["source", "status"], catch_exceptions=False).output
    assert "ops" in out and "breaker=open" in out and "failures=1" in out and "HTTP 503" in out
    assert 'cursor={"issues_updated_on": {"ops": "2026-03-01T08:04:00Z"}}' in out
    out = CliRunner().invoke(main, ["source", "reset", "ops"], catch_exceptions=False).output
    assert "circuit breaker closed" in out
    out = CliRunner().invoke(main, ["source", "status", "ops"], catch_exceptions=False).output
    assert "breaker=closed" in out and "failures=0" in out
    result = CliRunner().invoke(main, ["source", "reset", "nope"])
    assert result.exit_code == 1 and "'nope' does not exist" in result.output


def test_sensor_cursor_is_the_redmine_updated_on(sqlite_harness, redmine):
    sqlite_harness.add_container("ops", redmine_location(redmine), kind="redmine")
    first = evaluate_sensor(sqlite_harness)
    (request,) = first.run_requests
    assert request.run_key == "ops:never:2026-03-01T08:05:00Z|3 issues|1 wiki pages"  # no sync yet
    assert evaluate_sensor(sqlite_harness, first.cursor).run_requests == []
    redmine.add_note(102, "Rotated.")
    (changed,) = evaluate_sensor(sqlite_harness, first.cursor).run_requests
    assert changed.run_key == "ops:never:2026-03-01T08:06:00Z|3 issues|1 wiki pages"
    entry = json.loads(evaluate_sensor(sqlite_harness, first.cursor).cursor)["ops"]
    assert entry["fingerprint"].startswith("2026-03-01T08:06") and entry["synced"] == "never"


def test_refused_hosts_fail_the_sync_and_the_cli(sqlite_harness, redmine, monkeypatch, tmp_path):
    monkeypatch.setenv("OPS_SOURCE_ALLOWED_HOSTS", "redmine.example.com")
    sqlite_harness.add_container("local", redmine_location(redmine), kind="redmine")
    sqlite_harness.add_container("plain", "http://redmine.example.com?projects=ops&wiki=0", kind="redmine")
    assert "'127.0.0.1' is not allowed" in step_failure_message(sqlite_harness.sync("local", raise_on_error=False))
    assert "plain HTTP is refused" in step_failure_message(sqlite_harness.sync("plain", raise_on_error=False))
    assert redmine.requests == []

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPS_KB_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")
    result = CliRunner().invoke(
        main, ["container", "add", "--slug", "ops", "--source", f"redmine:{redmine.url}?projects=ops",
               "--embedder", "hash-256@1"]
    )
    assert result.exit_code == 1 and "is not allowed: OPS_SOURCE_ALLOWED_HOSTS lists redmine.example.com" in result.output
    assert "no containers" in CliRunner().invoke(main, ["container", "list"]).output


def test_http_pages_unchanged_cost_one_request_each(sqlite_harness, fake_site, source_env):
    for name in ("install", "backup", "restore"):
        fake_site.put_page(f"/guide/{name}.html", name.title(), f"How to {name}, step by step.")
    sqlite_harness.add_container("web", PagesSource.normalize_location(f"{fake_site.url}/sitemap.xml"), kind="http")
    first = sqlite_harness.sync("web", mode="full")
    assert sqlite_harness.counts(first)["inserted"] == 3
    again = sqlite_harness.sync("web", mode="full")
    docs = sqlite_harness.metadata(again, "source_documents")
    assert sqlite_harness.counts(again)["skipped"] == 3
    assert docs["source_requests"] == 4  # the sitemap, then one conditional GET per page, each a 304
    assert docs["source_state"]["validators"] == "3 pages"
    assert [r.status for r in fake_site.requests[-3:]] == [304, 304, 304]


def test_a_redmine_change_of_fields_alone_reaches_the_payloads_at_the_next_sync(harness, redmine):
    """An issue assigned and made urgent: its text, so its chunks and point ids, are the same; its
    points are written again with the new fields, and a filtered search finds it by them."""
    from ops_pipelines.search import search_container

    harness.add_container("ops", redmine_location(redmine), kind="redmine")
    first = harness.sync("ops")

    def fields_of(key: str) -> list[dict]:
        with closing(harness.kb()) as kb, harness.vector_store() as store:
            collection = kb.live_generation(kb.get_container("ops").id).collection
            points = store.scroll(collection, with_payload=True)
            return [p.payload["fields"] for p in points if p.payload["source_key"] == key]

    assert fields_of("issues/101") == [{
        "author": "Ada Ops", "priority": "Normal", "project": "Ops", "status": "New", "tracker": "Bug",
        "updated_on": "2026-03-01T08:02:00Z",
    }]
    redmine.change_issue(101, priority={"id": 4, "name": "Urgent"}, assigned_to={"id": 9, "name": "Bob Infra"})
    second = harness.sync("ops")
    assert harness.counts(second)["skipped"] == 3 and harness.counts(second)["updated"] == 0  # same text
    assert harness.metadata(second, "chunks")["documents_chunked"] == 0
    assert harness.metadata(second, "embeddings")["computed"] == 0
    collection = harness.metadata(second, "live_collection")
    assert (collection["upserted"], collection["deleted"], collection["points"]) == (
        1, 0, harness.metadata(first, "live_collection")["points"],
    )
    assert fields_of("issues/101") == [{
        "assignee": "Bob Infra", "author": "Ada Ops", "priority": "Urgent", "project": "Ops", "status": "New",
        "tracker": "Bug", "updated_on": "2026-03-01T08:06:00Z",
    }]
    with closing(harness.kb()) as kb, harness.vector_store() as store:
        hits = search_container(kb, store, "ops", "backups", 5, where={"fields.priority": "Urgent"})
        assert [h.payload["source_key"] for h in hits] == ["issues/101"]
        assert search_container(kb, store, "ops", "backups", 5, where={"fields.assignee": "Nobody"}) == []
    assert harness.metadata(harness.sync("ops"), "live_collection")["upserted"] == 0
