"""Keep the embedder_versions partition set in step with the embedder registry."""

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from ops_pipelines.defs.partitions import embedder_versions_partitions
from ops_pipelines.embedders import versions


def missing_embedder_partitions(instance) -> list[str]:
    known = set(instance.get_dynamic_partitions(embedder_versions_partitions.name))
    return sorted(set(versions()) - known)


@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Adds a partition to embedder_versions for every version in the registry that has none. "
        "Versions removed from the registry keep their partition (their history stays visible)."
    ),
)
def embedder_versions_sensor(context: SensorEvaluationContext):
    missing = missing_embedder_partitions(context.instance)
    if not missing:
        return SkipReason("every registered embedder version has its partition")
    context.log.info("adding embedder_versions partitions: %s", ", ".join(missing))
    return SensorResult(dynamic_partitions_requests=[embedder_versions_partitions.build_add_request(missing)])
