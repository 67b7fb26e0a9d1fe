"""Incremental sync as assets partitioned by container:
source_documents -> chunks -> embeddings -> live_collection."""

from datetime import timedelta
from typing import Literal

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from ops_pipelines import settings
from ops_pipelines.defs.errors import operator_errors
from ops_pipelines.defs.leases import container_writer
from ops_pipelines.defs.lineage import EMBEDDERS, KB, OBJECTS, OWNERS, QDRANT, capability
from ops_pipelines.defs.metadata import chunk_metadata, embedding_metadata, rows_table, setting
from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.pools import EMBEDDER, QDRANT_WRITES
from ops_pipelines.defs.resources import (
    EmbeddersResource,
    KnowledgeBaseResource,
    ObjectStoreResource,
    VectorStoreResource,
)
from ops_pipelines.defs.serving import reconcile_live_alias, serving_metadata
from ops_pipelines.embedders import get_version
from ops_pipelines.ingest import (
    BreakerPolicy,
    chunk_documents,
    embed_chunks,
    needed_chunkers,
    source_breaker,
    sync_collection,
    sync_documents,
)
from ops_pipelines.sources import open_source

_COMMON = {
    "partitions_def": containers_partitions,
    "group_name": "sync",
    "owners": OWNERS,
    "tags": capability("sync"),
}


class SourceDocumentsConfig(Config):
    mode: Literal["auto", "incremental", "full"] = Field(
        default="auto",
        description=(
            "Remote sources (Redmine, HTTP pages): 'incremental' reads what changed since the last "
            "sync and archives nothing; 'full' reads everything and archives what vanished; 'auto' "
            "does a full pass when none was made in OPS_SOURCE_FULL_EVERY_HOURS (default 24), "
            "else an incremental one. File sources are always read in full."
        ),
    )
    allow_empty_source: bool = Field(
        default=False,
        description="Archive everything when the source returns no documents at all.",
    )
    max_archive_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Refuse the sync if more than this share of active documents would be archived.",
    )
    max_document_bytes: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Skip (and name in `failures`) every source record larger than this many bytes, reading "
            "no further: a file, a JSONL line, a Redmine issue or wiki page, a web page. Default: "
            "OPS_SOURCE_MAX_DOCUMENT_BYTES (5 MiB)."
        ),
    )


class EmbeddingsConfig(Config):
    batch_size: int = Field(
        default=256, ge=1, le=4096,
        description="Chunks per embedder call (a served model's call is cut into requests of its version's "
        "batch_size, in_flight of them at once).",
    )


@asset(
    **_COMMON,
    kinds={KB, OBJECTS},
    description=(
        "The container's documents as its source has them: new ones inserted, changed ones "
        "updated, vanished ones archived, returning ones unarchived; raw bytes kept as blobs."
    ),
)
def source_documents(
    context: AssetExecutionContext,
    config: SourceDocumentsConfig,
    kb: KnowledgeBaseResource,
    objects: ObjectStoreResource,
) -> MaterializeResult:
    with operator_errors(), kb.open() as store, container_writer(context, store, context.partition_key) as container:
        source = open_source(
            container.source_kind, container.source_location, log=context.log,
            max_document_bytes=config.max_document_bytes, fields=container.declared_fields,
        )
        try:
            with source_breaker(store, container, BreakerPolicy.from_env()):
                report = sync_documents(
                    store,
                    objects.open(),
                    container,
                    source,
                    mode=config.mode,
                    full_every=timedelta(hours=settings.source_float("OPS_SOURCE_FULL_EVERY_HOURS", 24.0)),
                    allow_empty_source=config.allow_empty_source,
                    max_archive_fraction=config.max_archive_fraction,
                    log=context.log,
                )
        finally:
            source.close()
        totals = store.count_documents(container.id)
    counts = report.counts()
    context.log.info("documents of %s (%s read): %s", container.slug, report.mode, counts)
    metadata = {
        **counts,
        "mode": report.mode,
        "source": source.spec,
        "max_document_bytes": setting(source.max_document_bytes),
        "active_documents": totals["active"],
        "archived_documents": totals["archived"],
        "sync_counts": rows_table([counts], list(counts)),
    }
    if report.failures:
        metadata["failures"] = rows_table(
            [{"source_key": key, "reason": reason} for key, reason in report.failures[:100]], ["source_key", "reason"]
        )
    if report.archive_withheld:
        metadata["archive_withheld"] = report.archive_withheld
    if report.state is not None:
        metadata["source_state"] = MetadataValue.json(_state_summary(report.state))
    if requests := getattr(source, "requests", None):
        metadata["source_requests"] = requests
    return MaterializeResult(metadata=metadata)


def _state_summary(state: dict) -> dict:
    """The saved source state for the UI: cursors in full, per-page validators only counted."""
    return {k: (f"{len(v)} pages" if k == "validators" else v) for k, v in state.items()}


@asset(
    **_COMMON,
    deps=[source_documents],
    kinds={KB},
    description=(
        "Active documents cut into chunks by the chunker of the container's embedder version (and of its "
        "live one, if another); only new or changed documents are cut again."
    ),
)
def chunks(context: AssetExecutionContext, kb: KnowledgeBaseResource) -> MaterializeResult:
    with operator_errors(), kb.open() as store, container_writer(context, store, context.partition_key) as container:
        reports = [chunk_documents(store, container, chunker, log=context.log) for chunker in needed_chunkers(store, container)]
    return MaterializeResult(metadata=chunk_metadata(reports))


@asset(
    **_COMMON,
    deps=[chunks],
    kinds={*EMBEDDERS, KB},
    pool=EMBEDDER,
    description=(
        "Vectors of the active chunks under the container's embedder version, in the embedding "
        "cache keyed by (embedder version, chunk hash): unchanged text is never embedded twice."
    ),
)
def embeddings(
    context: AssetExecutionContext,
    config: EmbeddingsConfig,
    kb: KnowledgeBaseResource,
    embedders: EmbeddersResource,
) -> MaterializeResult:
    with operator_errors(), kb.open() as store, container_writer(context, store, context.partition_key) as container:
        version = get_version(container.embedder_version)
        report = embed_chunks(
            store, container, embedders.get, version.name, config.batch_size, log=context.log
        )
    return MaterializeResult(metadata=embedding_metadata(version, report))


@asset(
    **_COMMON,
    deps=[embeddings],
    kinds={QDRANT},
    pool=QDRANT_WRITES,
    description=(
        "The container's live Qdrant collection (behind alias `kb_<slug>`) holding exactly one point "
        "per active chunk; reconciled by deterministic point id, so re-runs are idempotent. Its latest "
        "materialization names what serves: alias, collection, embedder version, generation, since "
        "when (a swap, rollback, restore or import records one too)."
    ),
)
def live_collection(
    context: AssetExecutionContext, kb: KnowledgeBaseResource, vectors: VectorStoreResource
) -> MaterializeResult:
    with (
        operator_errors(),
        kb.open() as store,
        container_writer(context, store, context.partition_key) as container,
        vectors.open() as qdrant,
    ):
        report = sync_collection(store, qdrant, container, log=context.log)
        synced_at = store.mark_synced(container.id)
        serving = serving_metadata(container, store.live_generation(container.id))
        reconcile_live_alias(context.instance, store, context.log)
    return MaterializeResult(
        metadata={
            **serving,
            "synced_at": MetadataValue.timestamp(synced_at),
            "created": report.created,
            "upserted": report.upserted,
            "deleted": report.deleted,
            "points": report.points,
            "search": MetadataValue.text(f'ops-pipelines search {container.slug} "your question"'),
        }
    )


sync_assets = [source_documents, chunks, embeddings, live_collection]
