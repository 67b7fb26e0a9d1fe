"""Watch every container's source and request a sync when its fingerprint changes."""

import json

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, sensor

from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.resources import KnowledgeBaseResource
from ops_pipelines.defs.sync.jobs import sync_job
from ops_pipelines.sources import SourceUnavailable, open_source


def container_tags(slug: str) -> dict[str, str]:
    return {"ops/container": slug}


@sensor(
    job=sync_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Per container, compares a cheap fingerprint of the source (file names, sizes, mtimes) "
        "with the last one seen and requests sync_job for the containers that changed. Also adds "
        "the partition of a container registered in the knowledge base but not yet in Dagster."
    ),
)
def source_change_sensor(context: SensorEvaluationContext, kb: KnowledgeBaseResource) -> SensorResult:
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(containers_partitions.name))
    with kb.open() as store:
        containers = store.list_containers()
    new_partitions = [c.slug for c in containers if c.slug not in known]
    requests = []
    for container in containers:
        try:
            fingerprint = open_source(container.source_kind, container.source_location).fingerprint()
        except SourceUnavailable as exc:
            context.log.warning("%s: source unavailable, no sync requested: %s", container.slug, exc)
            continue
        if seen.get(container.slug) == fingerprint:
            continue
        seen[container.slug] = fingerprint
        requests.append(
            RunRequest(
                partition_key=container.slug,
                run_key=f"{container.slug}:{fingerprint}",
                tags=container_tags(container.slug),
            )
        )
    return SensorResult(
        run_requests=requests,
        cursor=json.dumps(seen, sort_keys=True),
        dynamic_partitions_requests=(
            [containers_partitions.build_add_request(new_partitions)] if new_partitions else []
        ),
    )
