"""Capability: incremental sync from sources into the live collection."""

from dagster import Definitions

from ops_pipelines.defs.sync.assets import sync_assets
from ops_pipelines.defs.sync.jobs import sync_job
from ops_pipelines.defs.sync.schedules import sync_schedule
from ops_pipelines.defs.sync.sensors import source_change_sensor

defs = Definitions(
    assets=sync_assets,
    jobs=[sync_job],
    sensors=[source_change_sensor],
    schedules=[sync_schedule],
)
