from dagster import DynamicPartitionsDefinition

# One partition per knowledge-base container (its slug); `ops-pipelines container add` and the
# source-change sensor add them.
containers_partitions = DynamicPartitionsDefinition(name="containers")

# One partition per embedder version of the registry (ops_pipelines/embedders/versions.toml plus
# OPS_EMBEDDERS_FILE); `ops-pipelines embedders sync` and the embedder-versions sensor add them.
embedder_versions_partitions = DynamicPartitionsDefinition(name="embedder_versions")
