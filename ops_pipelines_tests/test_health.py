"""Health: the CLI table and exit code, and the scheduled asset checks, against real components;
each failure is a real one (a closed port, a missing alias)."""

from __future__ import annotations

from click.testing import CliRunner
from dagster import build_schedule_context

from ops_pipelines.cli import main
from ops_pipelines.defs.health.jobs import health_schedule
from ops_pipelines.health import COMPONENTS
from ops_pipelines_tests.test_cli import home  # noqa: F401 - the fixture


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_health_command_reports_every_component(home, corpus, monkeypatch):  # noqa: F811
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    run("sync", "kb1")
    code, out = run("health")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(COMPONENTS)
    assert all(line.split()[1] == "ok" for line in lines)
    assert "1 containers served" in out and "hash-256@1" in out

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
    assert set(evaluations) == set(COMPONENTS) and all(e.passed for e in evaluations.values())

    with harness.vector_store() as store:  # the alias is gone: searches fail
        store.replace_aliases({}, prefix="kb_")
    result = harness.job("health_job").execute_in_process(instance=harness.instance)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["qdrant"].passed
    assert "no alias serves docs" in evaluations["qdrant"].metadata["detail"].value
    assert all(e.passed for name, e in evaluations.items() if name != "qdrant")


def test_health_schedule_targets_the_checks():
    assert health_schedule.job_name == "health_job" and health_schedule.cron_schedule == "*/15 * * * *"
    assert len(health_schedule.evaluate_tick(build_schedule_context()).run_requests) == 1
