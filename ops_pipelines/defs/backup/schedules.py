"""The nightly backup: RPO 24 h by default."""

import os

from dagster import ScheduleDefinition

from ops_pipelines.defs.backup.jobs import backup_job

backup_schedule = ScheduleDefinition(
    name="backup_schedule",
    job=backup_job,
    cron_schedule=os.environ.get("OPS_BACKUP_CRON", "0 2 * * *"),
    description="Back up the knowledge base (cron from OPS_BACKUP_CRON, default 02:00 daily: RPO 24 h).",
)
