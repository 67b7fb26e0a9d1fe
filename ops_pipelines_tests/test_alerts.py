"""Alerts core: the failure record, secret redaction, and the webhook's retries against a real local
HTTP server (failing then accepting, refusing, hanging, and down)."""

from __future__ import annotations

import pytest

from ops_pipelines.alerts import (
    MAX_ERROR_CHARS,
    Redactor,
    StepFailure,
    failure_record,
    post_webhook,
    run_container,
    safe_url,
)
from ops_pipelines_tests.webhook_server import HANG, closed_port_url, webhook_server

ENV = {
    "OPS_S3_SECRET_KEY": "minio-secret-value-123",
    "POSTGRES_PASSWORD": "pg-password-456",
    "OPS_QDRANT_API_KEY": "qdrant-key-789",
    "OPS_KB_URL": "postgresql+psycopg2://ops:url-only-password@db:5432/kb",
    "OPS_S3_ACCESS_KEY": "ops",  # too short to search for: it would mask "ops" everywhere
    "OPS_S3_BUCKET": "ops-pipelines",  # not a secret
}


def test_redactor_masks_env_secrets_url_passwords_query_credentials_and_tokens():
    redact = Redactor.from_environ(ENV)
    text = (
        "login failed with minio-secret-value-123 / pg-password-456 / qdrant-key-789; "
        "password url-only-password alone; "
        "dsn postgresql+psycopg2://other:hunter2@db/kb; "
        "GET http://minio:9000/ops-pipelines/x.tar?X-Amz-Credential=AK%2F1&X-Amz-Signature=abcdef&keep=1; "
        "header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload"
    )
    out = redact(text)
    for secret in ("minio-secret-value-123", "pg-password-456", "qdrant-key-789", "url-only-password",
                   "hunter2", "AK%2F1", "abcdef", "eyJhbGciOiJIUzI1NiJ9"):
        assert secret not in out
    assert "postgresql+psycopg2://other:***@db/kb" in out
    assert "X-Amz-Signature=***" in out and "keep=1" in out
    assert "ops-pipelines" in out  # short or non-secret values are left alone


def test_run_container_from_tags_partition_or_config():
    assert run_container({"ops/container": "docs", "dagster/partition": "other"}) == "docs"
    assert run_container({"dagster/partition/container": "docs", "dagster/partition": "docs|hash-256@1"}) == "docs"
    assert run_container({"dagster/partition": "docs"}) == "docs"
    assert run_container({}, {"ops": {"rollback_alias": {"config": {"container": "docs"}}}}) == "docs"
    assert run_container({}, {"ops": {"import_container": {"config": {"archive": "x.tar", "slug": "copy"}}}}) == "copy"
    assert run_container({}, {"ops": {"kb_backup": {"config": {"include_blobs": True}}}}) is None


def test_failure_record_redacts_before_truncating_and_names_every_failed_step():
    redact = Redactor.from_environ(ENV)
    # The secret straddles the truncation point: redacting first leaves no prefix of it behind.
    error = "x" * (MAX_ERROR_CHARS - 5) + " minio-secret-value-123 and more"
    record = failure_record(
        job="sync_job",
        run_id="r-1",
        tags={"ops/container": "docs"},
        run_config={},
        steps=[StepFailure("live_collection", error), StepFailure("other_step", "second")],
        run_message="Execution of run for sync_job failed.",
        redact=redact,
        ui_url="http://dagster.example:3000/",
    )
    assert record.container == "docs" and record.job == "sync_job" and record.run_id == "r-1"
    assert record.step == "live_collection, other_step"
    assert "minio-sec" not in record.error and record.error.endswith("more characters]")
    assert len(record.error) < MAX_ERROR_CHARS + 40
    assert record.run_url == "http://dagster.example:3000/runs/r-1"
    payload = record.payload()
    assert payload["event"] == "run_failure"
    assert payload["text"].startswith("ops-pipelines: sync_job failed for container docs at step live_collection")
    assert {"container", "job", "run_id", "step", "error", "run_url"} <= set(payload)


def test_failure_record_without_failed_steps_uses_the_run_message():
    record = failure_record(
        job="backup_job", run_id="r-2", tags={}, run_config=None, steps=[],
        run_message="run worker crashed; see postgresql+psycopg2://u:pw-in-url@db/dagster",
        redact=Redactor.from_environ({}),
    )
    assert record.container is None and record.step is None and record.run_url is None
    assert record.error == "run worker crashed; see postgresql+psycopg2://u:***@db/dagster"
    assert record.summary() == "backup_job failed: run worker crashed; see postgresql+psycopg2://u:***@db/dagster"


def test_webhook_retries_5xx_with_exponential_backoff_then_delivers():
    delays = []
    with webhook_server(script=[503, 502]) as server:
        delivery = post_webhook(server.url, {"text": "hello"}, sleep=delays.append)
    assert delivery.delivered and delivery.attempts == 3 and delivery.detail == "HTTP 200"
    assert delays == [0.5, 1.0]
    assert [r.json for r in server.received] == [{"text": "hello"}] * 3


def test_webhook_honours_retry_after_on_429():
    delays = []
    with webhook_server(script=[(429, {"Retry-After": "3"})]) as server:
        delivery = post_webhook(server.url, {"text": "x"}, sleep=delays.append, deadline_seconds=30)
    assert delivery.delivered and delays == [3.0]


def test_webhook_refusal_is_not_retried():
    delays = []
    with webhook_server(script=[404]) as server:
        delivery = post_webhook(server.url, {"text": "x"}, sleep=delays.append)
    assert not delivery.delivered and delivery.attempts == 1 and delays == []
    assert "HTTP 404" in delivery.detail and "not retried" in delivery.detail
    assert len(server.received) == 1


def test_webhook_that_is_down_gives_up_without_raising_or_leaking_the_url():
    url = closed_port_url("/hooks/T0KEN-in-the-path")
    delays = []
    delivery = post_webhook(url, {"text": "x"}, sleep=delays.append, deadline_seconds=60)
    assert not delivery.delivered and delivery.attempts == 4
    assert delays == [0.5, 1.0, 2.0]
    assert "ConnectError" in delivery.detail and "gave up after 4 attempt(s)" in delivery.detail
    assert "T0KEN" not in delivery.detail
    assert safe_url(url).startswith("http://127.0.0.1:") and "T0KEN" not in safe_url(url)


def test_webhook_that_hangs_is_bounded_by_the_deadline():
    with webhook_server(script=[HANG, HANG, HANG, HANG]) as server:
        delivery = post_webhook(
            server.url, {"text": "x"}, timeout_seconds=0.3, deadline_seconds=1.0, backoff_seconds=0.05
        )
    assert not delivery.delivered
    assert "ReadTimeout" in delivery.detail
    assert delivery.attempts < 4  # the deadline, not the attempt count, stopped it


@pytest.mark.parametrize("url", ["not a url", "ftp://example.com/hook", "http:///no-host"])
def test_webhook_url_that_is_not_http_is_reported_not_raised(url):
    delivery = post_webhook(url, {"text": "x"})
    assert not delivery.delivered and delivery.attempts == 0
    assert "OPS_ALERT_WEBHOOK_URL is not an http(s) URL" in delivery.detail
