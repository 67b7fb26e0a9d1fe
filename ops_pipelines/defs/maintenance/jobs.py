import os

from dagster import ScheduleDefinition, define_asset_job

from ops_pipelines.defs.maintenance.assets import maintenance_assets

maintenance_job = define_asset_job(
    "maintenance_job",
    selection=maintenance_assets,
    tags={"ops/operation": "maintenance"},
    description="Orphan repair, retention of generations, cache, archived documents, backups and exports, then VACUUM.",
)

maintenance_schedule = ScheduleDefinition(
    name="maintenance_schedule",
    job=maintenance_job,
    cron_schedule=os.environ.get("OPS_MAINTENANCE_CRON", "0 3 * * 0"),
    description="Weekly maintenance (cron from OPS_MAINTENANCE_CRON, default Sunday 03:00).",
)
