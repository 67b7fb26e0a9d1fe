"""run_failure_alert_sensor, evaluated by Dagster's own run-status machinery (cursor, run matching)
over real failed runs on a test instance, posting to a real local webhook."""

from __future__ import annotations

import logging

import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterRunMetadataValue,
    DefaultSensorStatus,
    Definitions,
    asset,
    build_sensor_context,
    materialize,
)

from ops_pipelines.defs.alerts.assets import FAILURE_KEYS, run_failures
from ops_pipelines.defs.alerts.sensors import run_failure_alert_sensor
from ops_pipelines.defs.resources import AlertWebhookResource
from ops_pipelines_tests.webhook_server import closed_port_url, webhook_server

SECRET = "s3cr3t-minio-key-value"
DB_PASSWORD = "db-pa55word"


def tick(instance, cursor: str | None, webhook_url: str | None):
    """One sensor tick, as the daemon runs it, in a code location (the runs here are executed
    in-process, like the CLI's, so they match only because the sensor watches every run)."""
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        repository_name="ops_pipelines",
        resources={"alerts": AlertWebhookResource(url=webhook_url, ui_url="http://dagster.example:3000")},
    )
    data = run_failure_alert_sensor.evaluate_tick(context)
    assert data.run_requests == []
    return context.cursor


def failures(instance) -> list[dict]:
    records = instance.fetch_observations(AssetRecordsFilter(asset_key=run_failures.key), limit=50).records
    return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in records]


@asset
def leaky_step():
    """Fails quoting a DSN with a password and a secret the environment holds."""
    raise RuntimeError(f"cannot reach postgresql+psycopg2://ops:{DB_PASSWORD}@db/kb with key {SECRET}")


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("OPS_S3_SECRET_KEY", SECRET)


def test_a_failed_sync_is_recorded_and_posted(sqlite_harness, tmp_path):
    instance = sqlite_harness.instance
    sqlite_harness.add_container("docs", tmp_path / "unmounted")
    with webhook_server() as server:
        cursor = tick(instance, None, server.url)  # the first tick starts from the end of the event log
        result = sqlite_harness.sync("docs", raise_on_error=False)
        assert not result.success
        cursor = tick(instance, cursor, server.url)

        (record,) = failures(instance)
        assert set(FAILURE_KEYS) <= set(record)
        assert record["container"] == "docs"
        assert record["job"] == "materialize source_documents, chunks, embeddings, live_collection"  # its steps, in order
        assert record["run_id"] == result.run_id
        stored = instance.fetch_observations(AssetRecordsFilter(asset_key=run_failures.key), limit=1).records[0]
        assert isinstance(stored.asset_observation.metadata["run_id"], DagsterRunMetadataValue)  # a link in the UI
        assert record["step"] == "source_documents"
        assert "does not exist (unmounted or moved?)" in record["error"]

        (received,) = server.received
        assert received.path == "/hooks/T0KEN-in-the-path"
        body = received.json
        assert body["event"] == "run_failure" and body["run_id"] == result.run_id
        assert body["container"] == "docs" and body["step"] == "source_documents"
        assert body["run_url"] == f"http://dagster.example:3000/runs/{result.run_id}"
        assert "for container docs at step source_documents" in body["text"]

        # The next tick finds nothing new: one failure, one record, one post.
        tick(instance, cursor, server.url)
        assert len(failures(instance)) == 1 and len(server.received) == 1


def sensor_output(capfd, caplog) -> str:
    """What the sensor logged: Dagster's console handler writes to the process's stderr."""
    out, err = capfd.readouterr()
    return out + err + caplog.text


def test_secrets_never_leave_the_failure(sqlite_harness, secret_env, capfd, caplog):
    instance = sqlite_harness.instance
    with webhook_server() as server:
        cursor = tick(instance, None, server.url)
        result = materialize([leaky_step], instance=instance, raise_on_error=False, tags={"ops/container": "kb1"})
        assert not result.success
        capfd.readouterr()  # the run's own log (its traceback) is not the sensor's
        with caplog.at_level(logging.DEBUG):
            tick(instance, cursor, server.url)
        logged = sensor_output(capfd, caplog)

    (record,) = failures(instance)
    assert record["container"] == "kb1" and record["step"] == "leaky_step"
    assert record["job"] == "materialize leaky_step"  # not Dagster's __ASSET_JOB
    assert record["error"].startswith("RuntimeError: cannot reach postgresql+psycopg2://ops:***@db/kb with key ***")
    (received,) = server.received
    observation = instance.fetch_observations(AssetRecordsFilter(asset_key=AssetKey("run_failures")), limit=1)
    stored = repr(observation.records[0].event_log_entry)
    assert "recorded the failure of run" in logged and "alert posted to http://127.0.0.1:" in logged
    for leak in (SECRET, DB_PASSWORD):
        assert leak not in received.body.decode()
        assert leak not in stored
        assert leak not in logged
        assert leak not in repr(record)


def test_a_webhook_that_is_down_is_logged_and_the_sensor_moves_on(sqlite_harness, tmp_path, capfd, caplog):
    instance = sqlite_harness.instance
    down = closed_port_url("/hooks/T0KEN-in-the-path")
    sqlite_harness.add_container("docs", tmp_path / "unmounted")
    cursor = tick(instance, None, down)
    sqlite_harness.sync("docs", raise_on_error=False)
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        cursor = tick(instance, cursor, down)
    logged = sensor_output(capfd, caplog)
    assert len(failures(instance)) == 1  # recorded although the webhook is down
    assert "NOT delivered to http://127.0.0.1:" in logged and "ConnectError" in logged
    assert "T0KEN" not in logged

    # The cursor moved past the failure: the next tick neither records nor posts it again.
    tick(instance, cursor, down)
    assert len(failures(instance)) == 1


def test_without_a_webhook_failures_are_still_recorded(sqlite_harness, tmp_path):
    instance = sqlite_harness.instance
    sqlite_harness.add_container("docs", tmp_path / "unmounted")
    cursor = tick(instance, None, None)
    sqlite_harness.sync("docs", raise_on_error=False)
    tick(instance, cursor, None)
    (record,) = failures(instance)
    assert record["container"] == "docs"


def test_the_sensor_runs_by_default_and_watches_every_run():
    assert run_failure_alert_sensor.default_status == DefaultSensorStatus.RUNNING
    # an alert within half a minute, without an idle log line every few seconds
    assert run_failure_alert_sensor.minimum_interval_seconds == 30
    defs = Definitions(
        assets=[run_failures], sensors=[run_failure_alert_sensor], resources={"alerts": AlertWebhookResource()}
    )
    assert defs.resolve_sensor_def("run_failure_alert_sensor")
