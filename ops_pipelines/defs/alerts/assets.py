"""The external asset failed runs are recorded on: its observations are the alert history."""

from dagster import AssetSpec

from ops_pipelines.defs.lineage import OWNERS, capability

# Metadata keys of every observation (the e2e test and dashboards read them).
FAILURE_KEYS = ("container", "job", "run_id", "step", "error")

run_failures = AssetSpec(
    "run_failures",
    group_name="alerts",
    owners=OWNERS,
    kinds={"dagster"},
    tags=capability("alerts"),
    description=(
        "Every failed run of the instance, one observation each, recorded by run_failure_alert_sensor: "
        "container, job, run_id, failed step and error (secrets redacted, long errors truncated). "
        "The same record is posted to OPS_ALERT_WEBHOOK_URL when it is set."
    ),
)
