"""Capability: embedder versions as partitions (refresh and rotation build on them)."""

from dagster import Definitions

from ops_pipelines.defs.refresh.sensors import embedder_versions_sensor

defs = Definitions(sensors=[embedder_versions_sensor])
