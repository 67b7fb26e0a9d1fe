from __future__ import annotations

from dagster import SkipReason, build_sensor_context, instance_for_test

from ops_pipelines.defs.partitions import embedder_versions_partitions
from ops_pipelines.defs.refresh.sensors import embedder_versions_sensor


def test_sensor_adds_the_registry_versions_that_have_no_partition(tmp_path, monkeypatch):
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(embedder_versions_partitions.name, ["hash-256@1", "retired@1"])
        result = embedder_versions_sensor(build_sensor_context(instance=instance))
        (request,) = result.dynamic_partitions_requests
        assert request.partitions_def_name == "embedder_versions"
        assert list(request.partition_keys) == ["minilm-l6-v2-bm25@1", "minilm-l6-v2@1", "minilm-l6-v2@2"]

        instance.add_dynamic_partitions(embedder_versions_partitions.name, list(request.partition_keys))
        assert isinstance(embedder_versions_sensor(build_sensor_context(instance=instance)), SkipReason)

        extra = tmp_path / "more.toml"
        extra.write_text('[versions."hash-64@1"]\nprovider = "hashing"\ndimension = 64\n')
        monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(extra))
        (request,) = embedder_versions_sensor(build_sensor_context(instance=instance)).dynamic_partitions_requests
        assert list(request.partition_keys) == ["hash-64@1"]
