"""Record every failed run and post it to the alert webhook."""

from dagster import AssetObservation, DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from ops_pipelines.alerts import Redactor, StepFailure, failure_record, post_webhook, safe_url
from ops_pipelines.defs.alerts.assets import FAILURE_KEYS, run_failures
from ops_pipelines.defs.errors import step_error
from ops_pipelines.defs.resources import AlertWebhookResource


@run_failure_sensor(
    # Every run of the instance: runs the `ops-pipelines` commands execute in-process carry no
    # code-location origin, and a sensor scoped to this location would never see them fail.
    monitor_all_code_locations=True,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5,
    description=(
        "Records each failed run as an observation of run_failures (container, job, run_id, step, "
        "error; secrets redacted) and posts it as JSON to OPS_ALERT_WEBHOOK_URL when set, retrying "
        "with backoff; a webhook that stays down is logged, never retried forever."
    ),
)
def run_failure_alert_sensor(context: RunFailureSensorContext, alerts: AlertWebhookResource) -> None:
    run = context.dagster_run
    record = failure_record(
        job=run.job_name,
        run_id=run.run_id,
        tags=run.tags,
        run_config=run.run_config,
        steps=[StepFailure(e.step_key or "?", step_error(e)) for e in context.get_step_failure_events()],
        run_message=context.failure_event.message or "",
        redact=Redactor.from_environ(extra=[alerts.url]),
        ui_url=alerts.ui_url,
    )
    context.instance.report_runless_asset_event(
        AssetObservation(
            asset_key=run_failures.key,
            description=record.summary(),
            metadata={key: getattr(record, key) for key in FAILURE_KEYS},
        )
    )
    context.log.info("recorded the failure of run %s: %s", record.run_id, record.summary())
    if not alerts.url:
        return
    delivery = post_webhook(alerts.url, record.payload())
    if delivery.delivered:
        context.log.info("alert posted to %s (%s)", safe_url(alerts.url), delivery.detail)
    else:
        context.log.error(
            "alert for run %s NOT delivered to %s: %s", record.run_id, safe_url(alerts.url), delivery.detail
        )
