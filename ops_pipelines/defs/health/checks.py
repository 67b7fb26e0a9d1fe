"""Health as asset checks on ``knowledge_base``: one check per component, and the sync freshness of
every container, on a schedule, so the UI shows when each last answered and which containers are
stale, and the run history shows when that changed."""

from datetime import timedelta

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetSpec,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from ops_pipelines import settings
from ops_pipelines.defs.lineage import KB, OBJECTS, OWNERS, QDRANT, capability
from ops_pipelines.defs.metadata import table
from ops_pipelines.defs.resources import KnowledgeBaseResource, ObjectStoreResource, VectorStoreResource
from ops_pipelines.defs.sync.assets import live_collection
from ops_pipelines.freshness import sync_freshness
from ops_pipelines.health import COMPONENTS, check_all

knowledge_base = AssetSpec(
    "knowledge_base",
    group_name="health",
    owners=OWNERS,
    kinds={KB, QDRANT, OBJECTS},
    tags=capability("health"),
    description=(
        "The knowledge base as a whole: metadata DB, Qdrant, whether each container is served as recorded, "
        "object store, embedders, Dagster instance, and how recently each container synced. Its checks run "
        "on health_schedule."
    ),
)

DESCRIPTIONS = {
    "metadata_db": "The metadata DB answers a query and its schema version is known.",
    "qdrant": "Qdrant answers (lists its collections).",
    "serving": (
        "Every container's alias is on its recorded live generation, that collection holds one point per "
        "active chunk, and no writer of it was killed half way; a failure names the container and what to run."
    ),
    "object_store": "A probe object is written, read back and deleted.",
    "embedders": "Every embedder version in use loads offline and embeds a sentence.",
    "dagster_instance": "The instance's run storage answers (the daemon's heartbeat is reported).",
}


@multi_asset_check(
    specs=[AssetCheckSpec(name, asset=knowledge_base.key, description=DESCRIPTIONS[name]) for name in COMPONENTS],
    description="Probe every component the pipelines depend on.",
)
def knowledge_base_health(
    context: AssetCheckExecutionContext,
    kb: KnowledgeBaseResource,
    vectors: VectorStoreResource,
    objects: ObjectStoreResource,
):
    for result in check_all(kb.url, vectors.open, objects.open, context.instance):
        yield AssetCheckResult(
            asset_key=knowledge_base.key,
            check_name=result.component,
            passed=result.ok,
            severity=AssetCheckSeverity.ERROR,
            description=result.detail,
            metadata={"latency_ms": result.latency_ms},
        )


@asset_check(
    asset=knowledge_base.key,
    name="sync_freshness",
    description=(
        "Every container synced within OPS_SYNC_MAX_AGE_HOURS (default 24 h); WARNs with a table of the "
        "stale and never-synced ones, their age and their last sync run."
    ),
)
def sync_freshness_check(context: AssetCheckExecutionContext, kb: KnowledgeBaseResource) -> AssetCheckResult:
    max_age = timedelta(hours=settings.sync_max_age_hours())
    with kb.open() as store:
        report = sync_freshness(store.list_containers(), max_age)
    rows = report.table()
    # Why a container is stale: its last sync run failed, is still going, or there was none.
    rows["last_sync_run"] = [
        _last_sync_run(context.instance, slug) if status != "fresh" else None
        for slug, status in zip(rows["container"], rows["status"], strict=True)
    ]
    if report.stale:
        context.log.warning("sync freshness: %s", report.summary())
    return AssetCheckResult(
        passed=not report.stale,
        severity=AssetCheckSeverity.WARN,
        description=report.summary(),
        metadata={
            "max_age_hours": report.max_age_hours,
            "containers": len(report.containers),
            "stale": len(report.stale),
            "oldest_hours": MetadataValue.float(
                max((c.age_hours for c in report.containers if c.age_hours is not None), default=0.0)
            ),
            "freshness": table(rows),
        },
    )


def _last_sync_run(instance, slug: str) -> str:
    """Status and id of the latest run that set out to sync the container (to refresh its
    live_collection partition), whichever job or launcher started it."""
    planned = instance.get_latest_planned_materialization_info(live_collection.key, partition=slug)
    run = instance.get_run_by_id(planned.run_id) if planned else None
    if run is None:
        return "no sync run recorded"
    return f"{run.status.value} {run.run_id}"
