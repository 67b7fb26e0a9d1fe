"""Capability: run-failure alerts, recorded on the external asset run_failures and posted to a webhook."""

from dagster import Definitions

from ops_pipelines.defs.alerts.assets import run_failures
from ops_pipelines.defs.alerts.sensors import run_failure_alert_sensor

defs = Definitions(assets=[run_failures], sensors=[run_failure_alert_sensor])
