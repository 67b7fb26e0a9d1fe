"""Health: the CLI table and exit code, and the scheduled asset checks, against real components;
each failure is a real one (a closed port, a missing alias)."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner
from dagster import AssetCheckSeverity, build_schedule_context
from sqlalchemy import update

from ops_pipelines.cli import main
from ops_pipelines.defs.health.jobs import health_schedule
from ops_pipelines.health import COMPONENTS
from ops_pipelines.kb import schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines_tests.cli.test_commands import home  # noqa: F401 - the fixture


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_health_command_reports_every_component(home, corpus, monkeypatch):  # noqa: F811
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    run("sync", "kb1")
    code, out = run("health")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [*COMPONENTS, "sync_freshness"]
    assert all(line.split()[1] == "ok" for line in lines)
    assert "1 containers served" in out and "hash-256@1" in out
    assert "all 1 containers synced within 24 h" in out

    monkeypatch.setenv("OPS_S3_ENDPOINT", "127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("OPS_S3_ACCESS_KEY", "k")
    monkeypatch.setenv("OPS_S3_SECRET_KEY", "s3cr3t-value")
    code, out = run("health")
    assert code == 1
    assert "object_store      FAIL" in out and "unhealthy: object_store" in out
    assert "s3cr3t-value" not in out


def test_health_job_checks_fail_on_an_unserved_container(harness, corpus):
    harness.add_container("docs", corpus)
    harness.sync("docs")
    result = harness.job("health_job").execute_in_process(instance=harness.instance)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {*COMPONENTS, "sync_freshness"} and all(e.passed for e in evaluations.values())

    with harness.vector_store() as store:  # the live collection is gone: searches fail
        store.drop_collection(harness.serving("docs"))
    result = harness.job("health_job").execute_in_process(instance=harness.instance)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["qdrant"].passed
    assert "no alias serves docs" in evaluations["qdrant"].metadata["detail"].value
    assert all(e.passed for name, e in evaluations.items() if name != "qdrant")


def test_health_schedule_targets_the_checks():
    assert health_schedule.job_name == "health_job" and health_schedule.cron_schedule == "*/15 * * * *"
    assert len(health_schedule.evaluate_tick(build_schedule_context()).run_requests) == 1


def test_sync_freshness_warns_about_stale_and_never_synced_containers(harness, corpus, tmp_path, monkeypatch):
    monkeypatch.delenv("OPS_SYNC_MAX_AGE_HOURS", raising=False)
    for slug in ("fresh", "old"):
        harness.add_container(slug, corpus)
        harness.sync(slug)
    harness.add_container("broken", tmp_path / "unmounted")
    failed = harness.sync("broken", raise_on_error=False)
    assert not failed.success
    kb = harness.kb()
    try:
        with kb.engine.begin() as conn:  # "old" last synced 30 hours ago
            conn.execute(
                update(schema.containers)
                .where(schema.containers.c.slug == "old")
                .values(last_synced_at=utcnow() - timedelta(hours=30))
            )
    finally:
        kb.close()

    result = harness.job("health_job").execute_in_process(instance=harness.instance)
    assert result.success  # a warning does not fail the health run
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["sync_freshness"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.description == (
        "2 of 3 containers not synced within 24 h: broken (never synced), old (30 h)"
    )
    md = {k: v.value for k, v in check.metadata.items()}
    assert md["stale"] == 2 and md["containers"] == 3 and md["max_age_hours"] == 24
    rows = {r.data["container"]: r.data for r in md["freshness"].records}
    assert rows["broken"]["status"] == "never synced"
    assert rows["broken"]["last_sync_run"] == f"FAILURE {failed.run_id}"  # why it is stale
    assert rows["old"]["status"] == "stale" and 29.9 <= rows["old"]["age_hours"] <= 30.1
    assert rows["fresh"]["status"] == "fresh" and rows["fresh"]["last_sync_run"] is None

    monkeypatch.setenv("OPS_SYNC_MAX_AGE_HOURS", "48")  # a wider window; "broken" still never synced
    result = harness.job("health_job").execute_in_process(instance=harness.instance)
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["sync_freshness"]
    assert check.description == "1 of 3 containers not synced within 48 h: broken (never synced)"


def test_health_command_warns_about_a_never_synced_container_and_exits_0(home, corpus, monkeypatch):  # noqa: F811
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    code, out = run("health")
    assert code == 0, out
    (line,) = [line for line in out.splitlines() if line.startswith("sync_freshness")]
    assert line.split()[1] == "warn" and line.endswith("1 of 1 containers not synced within 24 h: kb1 (never synced)")

    monkeypatch.setenv("OPS_SYNC_MAX_AGE_HOURS", "soon")
    code, out = run("health")
    (line,) = [line for line in out.splitlines() if line.startswith("sync_freshness")]
    assert code == 0 and line.split()[1] == "warn"
    assert line.endswith("ValueError: OPS_SYNC_MAX_AGE_HOURS='soon' is not a positive number of hours (e.g. 24 or 1.5)")
