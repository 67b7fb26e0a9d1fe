"""Capability: refresh and model rotation over (container, embedder version) partitions."""

from dagster import Definitions

from ops_pipelines.defs.refresh.assets import refresh_assets
from ops_pipelines.defs.refresh.checks import shadow_collection_checks
from ops_pipelines.defs.refresh.jobs import refresh_job, rollback_job
from ops_pipelines.defs.refresh.sensors import embedder_versions_sensor

defs = Definitions(
    assets=refresh_assets,
    asset_checks=[shadow_collection_checks],
    jobs=[refresh_job, rollback_job],
    sensors=[embedder_versions_sensor],
)
