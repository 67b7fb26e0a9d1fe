"""Capability: back up the whole knowledge base, and restore it."""

from dagster import Definitions

from ops_pipelines.defs.backup.assets import kb_backup
from ops_pipelines.defs.backup.jobs import backup_job, restore_job
from ops_pipelines.defs.backup.schedules import backup_schedule

defs = Definitions(assets=[kb_backup], jobs=[backup_job, restore_job], schedules=[backup_schedule])
