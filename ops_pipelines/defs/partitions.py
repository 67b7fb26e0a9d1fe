from dagster import DynamicPartitionsDefinition, MultiPartitionKey, MultiPartitionsDefinition

# One partition per knowledge-base container (its slug); `ops-pipelines container add` and the
# source-change sensor add them.
containers_partitions = DynamicPartitionsDefinition(name="containers")

# One partition per embedder version of the registry (ops_pipelines/embedders/versions.toml plus
# OPS_EMBEDDERS_FILE); `ops-pipelines embedders sync` and the embedder-versions sensor add them.
embedder_versions_partitions = DynamicPartitionsDefinition(name="embedder_versions")

# Refresh and model rotation: one partition per (container, embedder version). Backfilling one
# embedder version over every container is the model-rotation runbook.
refresh_partitions = MultiPartitionsDefinition(
    {"container": containers_partitions, "embedder_version": embedder_versions_partitions}
)


def refresh_partition(partition_key: str) -> tuple[str, str]:
    """(container slug, embedder version) of a refresh partition key."""
    keys = refresh_partitions.get_partition_key_from_str(str(partition_key)).keys_by_dimension
    return keys["container"], keys["embedder_version"]


def refresh_partition_key(container: str, embedder_version: str) -> MultiPartitionKey:
    return MultiPartitionKey({"container": container, "embedder_version": embedder_version})
