"""Refresh and model rotation as assets partitioned by (container, embedder version):
chunks -> version_embeddings -> shadow_collection (+ blocking checks) -> live_alias."""

from enum import Enum

from dagster import (
    AssetExecutionContext,
    AssetRecordsFilter,
    Config,
    DagsterEventType,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from ops_pipelines.defs.errors import operator_errors
from ops_pipelines.defs.leases import container_writer
from ops_pipelines.defs.lineage import EMBEDDERS, KB, OWNERS, QDRANT, capability
from ops_pipelines.defs.metadata import chunk_metadata, embedding_metadata
from ops_pipelines.defs.partitions import refresh_partition, refresh_partitions
from ops_pipelines.defs.pools import EMBEDDER, QDRANT_WRITES
from ops_pipelines.defs.resources import EmbeddersResource, KnowledgeBaseResource, VectorStoreResource
from ops_pipelines.defs.serving import live_collection_event, reconcile_live_alias, serving_metadata
from ops_pipelines.defs.sync.assets import EmbeddingsConfig, chunks
from ops_pipelines.embedders import chunker_of, get_version
from ops_pipelines.ingest import chunk_documents, embed_chunks, needed_chunkers
from ops_pipelines.kb import Container, Generation, GenerationNotFound, KnowledgeBase
from ops_pipelines.kb.generations import LIVE
from ops_pipelines.kb.leases import holder_for
from ops_pipelines.refresh import (
    IN_PLACE,
    SHADOW,
    SWAP_CHECKS,
    build_generation,
    check_in_place,
    gate_generation,
    refuse_failed_checks,
    require_chunks,
    swap_to,
)

_COMMON = {
    "partitions_def": refresh_partitions,
    "group_name": "refresh",
    "owners": OWNERS,
    "tags": capability("refresh"),
}


class RefreshMode(Enum):
    shadow = SHADOW
    in_place = IN_PLACE


class VersionEmbeddingsConfig(EmbeddingsConfig):
    recompute: bool = Field(
        default=False,
        description="Re-embed every active chunk and overwrite the cache (a suspect cache); "
        "by default only chunks the cache lacks are embedded.",
    )


class ShadowCollectionConfig(Config):
    mode: RefreshMode = Field(
        default=RefreshMode.shadow,
        description="shadow: build a new generation beside the live one and swap after the checks "
        "pass. in_place: rewrite the live generation (same dimension only; searches see the "
        "rewrite as it happens).",
    )


class LiveAliasConfig(Config):
    retention: int = Field(
        default=2,
        ge=1,
        description="Generations kept per container, the live one included: 2 keeps one to roll back to.",
    )


@asset(
    **_COMMON,
    # Dagster maps the container dimension onto chunks' containers partitions by itself.
    deps=[chunks],
    kinds={*EMBEDDERS, KB},
    pool=EMBEDDER,
    description=(
        "The container's active chunks embedded under one embedder version, in the embedding "
        "cache: only chunks the cache lacks are computed, so a rebuild costs no model time."
    ),
)
def version_embeddings(
    context: AssetExecutionContext,
    config: VersionEmbeddingsConfig,
    kb: KnowledgeBaseResource,
    embedders: EmbeddersResource,
    vectors: VectorStoreResource,
) -> MaterializeResult:
    slug, version_name = refresh_partition(context.partition_key)
    with operator_errors(), kb.open() as store:
        version = get_version(version_name)
        container = store.get_container(slug)
        chunked = []
        if version.chunker not in {c.name for c in needed_chunkers(store, container)}:
            # A version with a chunker of its own cuts its chunks, beside the live ones, under the
            # container's lease for as long as that takes (not the whole run: syncs go on meanwhile).
            with store.container_lease(container.id, holder_for(context.run_id)):
                chunked = [chunk_documents(store, container, chunker_of(version.name), log=context.log)]
        require_chunks(store, container, version.chunker)
        if _build_mode_of_this_run(context) == IN_PLACE:  # refused before any model time
            with vectors.open() as qdrant:
                check_in_place(store, qdrant, container, version.name)
        report = embed_chunks(
            store, container, embedders.get, version.name, config.batch_size,
            recompute=config.recompute, log=context.log,
        )
    cut = {k: v for k, v in chunk_metadata(chunked).items() if k != "active_chunks"} if chunked else {}
    return MaterializeResult(metadata={**embedding_metadata(version, report), "recompute": config.recompute, **cut})


@asset(
    **_COMMON,
    deps=[version_embeddings],
    kinds={QDRANT},
    pool=QDRANT_WRITES,
    description=(
        "A collection generation `kb_<slug>__<embedder>__g<n>` filled from the embedding cache: in "
        "shadow mode a new one beside the live one (searches keep using the old), resumed if a "
        "run died mid-build; in place, the live one rewritten. Gated by blocking checks."
    ),
)
def shadow_collection(
    context: AssetExecutionContext,
    config: ShadowCollectionConfig,
    kb: KnowledgeBaseResource,
    vectors: VectorStoreResource,
) -> MaterializeResult:
    slug, version_name = refresh_partition(context.partition_key)
    with operator_errors(), kb.open() as store, container_writer(context, store, slug) as container, vectors.open() as qdrant:
        report = build_generation(
            store, qdrant, container, version_name, config.mode.value, log=context.log,
            embedded_just_before=_materialized_in_this_run(context, version_embeddings),
        )
        active = store.count_active_chunks(container.id, get_version(version_name).chunker)
    return MaterializeResult(
        metadata={
            "mode": report.mode,
            "collection": report.generation.collection,
            "generation": report.generation.number,
            "embedder_version": version_name,
            "resumed": report.resumed,
            "upserted": report.upserted,
            "deleted": report.deleted,
            "points": report.points,
            "active_chunks": active,
            "index_seconds": report.index_seconds,
        }
    )


@asset(
    **_COMMON,
    deps=[shadow_collection],
    kinds={QDRANT},
    pool=QDRANT_WRITES,
    description=(
        "The live alias `kb_<slug>` on the refreshed generation: the swap. Records the container's "
        "new embedder version and generation, then moves the alias atomically; keeps `retention` "
        "generations for rollback and drops older ones. One partition per container is "
        "materialized, the version that serves it (syncs, swaps and rollbacks keep it so)."
    ),
)
def live_alias(
    context: AssetExecutionContext,
    config: LiveAliasConfig,
    kb: KnowledgeBaseResource,
    vectors: VectorStoreResource,
) -> MaterializeResult:
    slug, _ = refresh_partition(context.partition_key)
    with operator_errors(), kb.open() as store, container_writer(context, store, slug) as container, vectors.open() as qdrant:
        generation = built_generation(context, store, container)
        if generation.state != LIVE and not _checks_passed_in_this_run(context):
            # In refresh_job the blocking checks gated this step already; launched on its own
            # (say, live_alias alone from the UI), the swap runs them itself.
            refuse_failed_checks(container, generation, gate_generation(store, qdrant, container, generation))
        report = swap_to(store, qdrant, container, generation, retention=config.retention, log=context.log)
        live = store.generation(container.id, report.live.number)  # with the time it went live
        reconcile_live_alias(context.instance, store, context.log, recorded_by_caller=str(context.partition_key))
    context.log_event(live_collection_event(container, live, f"{report.alias} swapped to {live.collection}"))
    return MaterializeResult(
        metadata={
            **serving_metadata(container, live),
            "previous_collection": report.previous.collection if report.previous else "",
            "dropped": MetadataValue.json(report.dropped),
            "search": MetadataValue.text(f'ops-pipelines search {slug} "your question"'),
        }
    )


def _build_mode_of_this_run(context) -> str | None:
    """The mode shadow_collection builds with in this run (its run config), or None when the run
    does not build: read by version_embeddings, which runs first."""
    selection = context.run.asset_selection  # empty or None: the whole job
    if selection and shadow_collection.key not in selection:
        return None
    ops = (context.run.run_config or {}).get("ops") or {}
    config = (ops.get("shadow_collection") or {}).get("config") or {}
    mode = config.get("mode", SHADOW)
    return mode.value if isinstance(mode, RefreshMode) else mode


def _materialized_in_this_run(context, asset) -> bool:
    events = context.instance.all_logs(context.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    return any(e.dagster_event.asset_key == asset.key for e in events)


def _checks_passed_in_this_run(context) -> bool:
    events = context.instance.all_logs(context.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    passed = {
        e.dagster_event.asset_check_evaluation_data.check_name
        for e in events
        if e.dagster_event.asset_check_evaluation_data.passed
    }
    return passed >= set(SWAP_CHECKS)


def built_generation(context, store: KnowledgeBase, container: Container) -> Generation:
    """The generation the latest shadow_collection materialization of this partition built (its
    metadata is the hand-off to the checks and the swap)."""
    partition = str(context.partition_key)
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(shadow_collection.key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        raise GenerationNotFound(
            f"shadow_collection has never been built for {partition}: run refresh_job for it"
        )
    return store.generation(container.id, records[0].asset_materialization.metadata["generation"].value)


refresh_assets = [version_embeddings, shadow_collection, live_alias]
