import os

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from ops_pipelines.defs.health.checks import knowledge_base

health_job = define_asset_job(
    "health_job",
    selection=AssetSelection.checks_for_assets(knowledge_base.key),
    tags={"ops/operation": "health"},
    description=(
        "Probe the metadata DB, Qdrant, the object store, the embedders and the Dagster instance, and warn "
        "about containers not synced within OPS_SYNC_MAX_AGE_HOURS."
    ),
)

health_schedule = ScheduleDefinition(
    name="health_schedule",
    job=health_job,
    cron_schedule=os.environ.get("OPS_HEALTH_CRON", "*/15 * * * *"),
    description=(
        "Run the health and sync-freshness checks (cron from OPS_HEALTH_CRON, default every 15 minutes). Running "
        "from the start: the probes only read."
    ),
    default_status=DefaultScheduleStatus.RUNNING,
)
