"""Watch every container's source and request a sync when its fingerprint changes; retry a
failed sync, and leave alone a source whose circuit breaker is open."""

import json

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, sensor

from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.resources import KnowledgeBaseResource
from ops_pipelines.defs.sync.jobs import sync_job
from ops_pipelines.ingest import OPEN, BreakerPolicy, breaker_status
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.sources import SourceUnavailable, open_source


def container_tags(slug: str) -> dict[str, str]:
    return {"ops/container": slug}


@sensor(
    job=sync_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Per container, compares a cheap fingerprint of the source (file names, sizes, mtimes; "
        "Redmine's newest updated_on and counts; a sitemap's newest lastmod) with the last one "
        "seen and requests sync_job for the containers that changed. Retries a container whose "
        "last sync could not read its source, and requests nothing (not even a fingerprint) while "
        "its circuit breaker is open. Also adds the partition of a container registered in the "
        "knowledge base but not yet in Dagster."
    ),
)
def source_change_sensor(context: SensorEvaluationContext, kb: KnowledgeBaseResource) -> SensorResult:
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(containers_partitions.name))
    policy = BreakerPolicy.from_env()
    with kb.open() as store:
        containers = store.list_containers()
        states = {c.id: store.source_state(c.id) for c in containers}
    new_partitions = [c.slug for c in containers if c.slug not in known]
    requests = []
    for container in containers:
        state = states[container.id]
        if breaker_status(state, policy, utcnow()) == OPEN:
            context.log.warning(
                "%s: circuit breaker open until %s after %d failed syncs (%s); no sync requested",
                container.slug, state.opened_until.isoformat(timespec="seconds"), state.failures, state.last_error,
            )
            continue
        if state.failures:  # the last sync could not read the source: try again (a trial if half-open)
            requests.append(
                RunRequest(
                    partition_key=container.slug,
                    run_key=f"{container.slug}:retry:{state.failures}:{state.last_failure_at.isoformat()}",
                    tags=container_tags(container.slug),
                )
            )
            continue
        source = open_source(container.source_kind, container.source_location, log=context.log)
        try:
            fingerprint = source.fingerprint()
        except SourceUnavailable as exc:
            context.log.warning("%s: source unavailable, no sync requested: %s", container.slug, exc)
            continue
        finally:
            source.close()
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
