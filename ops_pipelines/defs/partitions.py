from dagster import DynamicPartitionsDefinition

# One partition per knowledge-base container (its slug); `ops-pipelines container add` and the
# source-change sensor add them.
containers_partitions = DynamicPartitionsDefinition(name="containers")
