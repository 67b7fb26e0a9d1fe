"""Capability: weekly maintenance and retention."""

from dagster import Definitions

from ops_pipelines.defs.maintenance.assets import maintenance_assets
from ops_pipelines.defs.maintenance.jobs import maintenance_job, maintenance_schedule

defs = Definitions(assets=maintenance_assets, jobs=[maintenance_job], schedules=[maintenance_schedule])
