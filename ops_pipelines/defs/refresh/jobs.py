from dagster import AssetMaterialization, Config, OpExecutionContext, define_asset_job, in_process_executor, job, op
from pydantic import Field

from ops_pipelines.defs.errors import operator_errors
from ops_pipelines.defs.leases import container_writer
from ops_pipelines.defs.partitions import refresh_partition_key, refresh_partitions
from ops_pipelines.defs.pools import QDRANT_WRITES
from ops_pipelines.defs.refresh.assets import live_alias, refresh_assets
from ops_pipelines.defs.resources import KnowledgeBaseResource, VectorStoreResource
from ops_pipelines.defs.serving import live_collection_event, reconcile_live_alias, serving_metadata
from ops_pipelines.refresh import rollback

# Embeddings, build, checks and swap are a strict chain: one process runs them in order, and
# the checks' failure stops the swap within the same run.
refresh_job = define_asset_job(
    "refresh_job",
    selection=refresh_assets,
    partitions_def=refresh_partitions,
    executor_def=in_process_executor,
    description=(
        "Re-embed one container under one embedder version (partition container|embedder_version): "
        "embeddings from the cache first, a shadow generation (or the live one in place), the "
        "reconciliation checks, then the alias swap. A failing check leaves the alias untouched."
    ),
)


class RollbackConfig(Config):
    container: str = Field(description="Container slug (or id).")
    to_generation: int | None = Field(
        default=None, description="Generation number to put live; default: the newest retired one."
    )


@op(description="Point `kb_<slug>` back at a retained generation and record it as live.", pool=QDRANT_WRITES)
def rollback_alias(
    context: OpExecutionContext, config: RollbackConfig, kb: KnowledgeBaseResource, vectors: VectorStoreResource
) -> None:
    with (
        operator_errors(),
        kb.open() as store,
        container_writer(context, store, config.container) as container,
        vectors.open() as qdrant,
    ):
        report = rollback(store, qdrant, container, config.to_generation, log=context.log)
        live = store.generation(container.id, report.live.number)  # with the time it went live
        partition = str(refresh_partition_key(container.slug, live.embedder_version))
        reconcile_live_alias(context.instance, store, context.log, recorded_by_caller=partition)
    previous = report.previous.collection if report.previous else ""
    context.log.info("rolled back %s: %s -> %s", report.alias, previous, live.collection)
    description = f"rollback of {report.alias} to generation {live.number}"
    # Recorded as a live_alias materialization, so the asset's history shows the rollback.
    context.log_event(
        AssetMaterialization(
            asset_key=live_alias.key,
            partition=partition,
            description=description,
            metadata={**serving_metadata(container, live), "previous_collection": previous, "rollback": True},
        )
    )
    context.log_event(live_collection_event(container, live, description))


@job(
    executor_def=in_process_executor,
    tags={"ops/operation": "rollback"},
    description="Roll a container's live alias back to a retained generation (no re-embedding).",
)
def rollback_job():
    rollback_alias()
