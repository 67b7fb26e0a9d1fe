"""Capability: health checks of everything the pipelines depend on, on a schedule."""

from dagster import Definitions

from ops_pipelines.defs.health.checks import knowledge_base, knowledge_base_health, sync_freshness_check
from ops_pipelines.defs.health.jobs import health_job, health_schedule

defs = Definitions(
    assets=[knowledge_base],
    asset_checks=[knowledge_base_health, sync_freshness_check],
    jobs=[health_job],
    schedules=[health_schedule],
)
