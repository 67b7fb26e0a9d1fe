"""Health as asset checks on ``knowledge_base``: one check per component, on a schedule, so the UI
shows when each last answered and the run history shows when one stopped."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetSpec,
    multi_asset_check,
)

from ops_pipelines.defs.resources import KnowledgeBaseResource, ObjectStoreResource, VectorStoreResource
from ops_pipelines.health import COMPONENTS, check_all

knowledge_base = AssetSpec(
    "knowledge_base",
    group_name="health",
    owners=["team:kb-ops"],
    description="The knowledge base as a whole: metadata DB, Qdrant, object store, embedders, Dagster instance.",
)

DESCRIPTIONS = {
    "metadata_db": "The metadata DB answers a query and its schema version is known.",
    "qdrant": "Qdrant answers and every container with a live generation is served by its alias.",
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
            metadata={"detail": result.detail, "latency_ms": result.latency_ms},
        )
