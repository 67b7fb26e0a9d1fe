"""Record every failed run and post it to the alert webhook."""

from dagster import AssetObservation, DefaultSensorStatus, MetadataValue, RunFailureSensorContext, run_failure_sensor

from ops_pipelines.alerts import Redactor, StepFailure, failure_record, job_label, post_webhook, safe_url
from ops_pipelines.defs.alerts.assets import FAILURE_KEYS, run_failures
from ops_pipelines.defs.errors import step_error
from ops_pipelines.defs.resources import AlertWebhookResource


@run_failure_sensor(
    # Every run of the instance: runs the `ops-pipelines` commands execute in-process carry no
    # code-location origin, and a sensor scoped to this location would never see them fail.
    monitor_all_code_locations=True,
    default_status=DefaultSensorStatus.RUNNING,
    # 30 s: an alert within half a minute, and the daemon's "Checking for new runs" INFO line twice a
    # minute when all is well, not every 5 s
    minimum_interval_seconds=30,
    description=(
        "Records each failed run as an observation of run_failures (container, job, run_id, step, "
        "error; secrets redacted) and posts it as JSON to OPS_ALERT_WEBHOOK_URL when set, retrying "
        "with backoff; a webhook that stays down is logged, never retried forever."
    ),
)
def run_failure_alert_sensor(context: RunFailureSensorContext, alerts: AlertWebhookResource) -> None:
    run = context.dagster_run
    record = failure_record(
        job=job_label(run.job_name, _assets_of(context)),
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
            metadata={
                **{key: getattr(record, key) for key in FAILURE_KEYS},
                "run_id": MetadataValue.dagster_run(record.run_id),  # a link to the run in the UI
            },
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


def _assets_of(context: RunFailureSensorContext) -> list[str]:
    """The assets the run was to materialize: its asset selection, or (a ``materialize`` run) the
    steps of its plan, which are the assets' ops."""
    run = context.dagster_run
    if run.asset_selection:
        return sorted(key.to_user_string() for key in run.asset_selection)
    plan = context.instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id) if run.execution_plan_snapshot_id else None
    return list(plan.step_keys_to_execute) if plan else []
