"""A periodic full sync of every container: the safety net under the change sensor."""

import os

from dagster import RunRequest, ScheduleEvaluationContext, schedule

from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.resources import KnowledgeBaseResource
from ops_pipelines.defs.sync.jobs import sync_job
from ops_pipelines.defs.sync.sensors import container_tags


@schedule(
    job=sync_job,
    cron_schedule=os.environ.get("OPS_SYNC_CRON", "0 */6 * * *"),
    description=(
        "Sync every container (cron from OPS_SYNC_CRON, default every 6 hours): every partition of a "
        "container that exists in the knowledge base."
    ),
)
def sync_schedule(context: ScheduleEvaluationContext, kb: KnowledgeBaseResource):
    with kb.open() as store:
        existing = {c.slug for c in store.list_containers()}
    for slug in context.instance.get_dynamic_partitions(containers_partitions.name):
        if slug not in existing:  # removed (a restore): source_change_sensor removes its partition
            context.log.warning("container %r no longer exists: not synced", slug)
            continue
        yield RunRequest(
            partition_key=slug,
            run_key=f"{slug}:{context.scheduled_execution_time.isoformat()}",
            tags=container_tags(slug),
        )
