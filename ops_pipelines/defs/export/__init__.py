"""Capability: export a container as an archive, and import one."""

from dagster import Definitions

from ops_pipelines.defs.export.assets import container_export
from ops_pipelines.defs.export.jobs import export_job, import_job

defs = Definitions(assets=[container_export], jobs=[export_job, import_job])
