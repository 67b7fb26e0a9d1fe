"""retrieval_eval_job, run after every sync and swap (retrieval_eval_sensor) and on a schedule."""

import os

from dagster import (
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from ops_pipelines.defs.partitions import containers_partitions, refresh_partition
from ops_pipelines.defs.quality.assets import retrieval_eval
from ops_pipelines.defs.refresh.assets import live_alias
from ops_pipelines.defs.serving import RECONCILED_TAG
from ops_pipelines.defs.sync.assets import live_collection

retrieval_eval_job = define_asset_job(
    "retrieval_eval_job",
    selection=[retrieval_eval],
    partitions_def=containers_partitions,
    tags={"ops/operation": "eval"},
    description="Score one container's live generation on its golden set (ops-pipelines eval prints the same).",
)


def _container_of(asset_key, partition: str) -> str:
    return refresh_partition(partition)[0] if asset_key == live_alias.key else partition


@sensor(
    job=retrieval_eval_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "After each materialization of live_collection (a sync) or live_alias (a swap or rollback), "
        "requests retrieval_eval for that container (not for live_alias partitions reported again "
        "when another container's swap reconciles them)."
    ),
)
def retrieval_eval_sensor(context: SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    if after is None:  # first tick: start from now, not from the whole history
        latest = [context.instance.fetch_materializations(key, limit=1).records for key in (live_collection.key, live_alias.key)]
        newest = max((r[0].storage_id for r in latest if r), default=0)
        return SensorResult(cursor=str(newest), skip_reason=SkipReason("watching syncs and swaps from now on"))
    requests, newest = {}, after
    for key in (live_collection.key, live_alias.key):
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(key, after_storage_id=after), limit=1000, ascending=True
        ).records
        for record in records:
            newest = max(newest, record.storage_id)
            if record.partition_key and RECONCILED_TAG not in (record.asset_materialization.tags or {}):
                container = _container_of(key, record.partition_key)
                requests[container] = RunRequest(partition_key=container, run_key=f"{container}:{record.storage_id}")
    if not requests:
        return SensorResult(cursor=str(newest), skip_reason=SkipReason("no sync or swap since the last tick"))
    return SensorResult(run_requests=list(requests.values()), cursor=str(newest))


@schedule(
    job=retrieval_eval_job,
    cron_schedule=os.environ.get("OPS_EVAL_CRON", "0 4 * * *"),
    description="Score every container's live generation on its golden set (cron from OPS_EVAL_CRON, default 04:00).",
)
def retrieval_eval_schedule(context):
    containers = context.instance.get_dynamic_partitions(containers_partitions.name)
    return [RunRequest(partition_key=slug, run_key=f"{slug}:{context.scheduled_execution_time}") for slug in containers]
