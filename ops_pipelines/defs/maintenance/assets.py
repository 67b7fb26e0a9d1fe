"""The weekly maintenance as assets: each step's effect is its materialization's metadata.

Orphans are repaired first (so retention and the purge work on a consistent knowledge base), the
database is vacuumed last (to reclaim what the other steps deleted).
"""

from datetime import timedelta

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field

from ops_pipelines import maintenance
from ops_pipelines.defs.errors import operator_errors
from ops_pipelines.defs.leases import knowledge_base_writer
from ops_pipelines.defs.lineage import KB, OBJECTS, OWNERS, QDRANT, capability
from ops_pipelines.defs.metadata import setting, table
from ops_pipelines.defs.pools import QDRANT_WRITES
from ops_pipelines.defs.resources import (
    EmbeddersResource,
    KnowledgeBaseResource,
    ObjectStoreResource,
    VectorStoreResource,
)

_COMMON = {"group_name": "maintenance", "owners": OWNERS, "tags": capability("maintenance")}


class DryRunConfig(Config):
    dry_run: bool = Field(default=False, description="Report what would be removed or written; change nothing.")


class GenerationRetentionConfig(DryRunConfig):
    retention: int = Field(
        default=maintenance.GENERATION_RETENTION,
        ge=1,
        description="Generations kept per container: the live one and the most recently served retired ones.",
    )


class DocumentRetentionConfig(DryRunConfig):
    archived_days: int = Field(
        default=maintenance.ARCHIVED_DOCUMENT_RETENTION.days,
        ge=1,
        description="Archived documents older than this many days are purged, with blobs nothing else uses.",
    )


class ArchiveRetentionConfig(DryRunConfig):
    keep_daily: int = Field(
        default=maintenance.BACKUP_KEEP_DAILY, ge=0, description="Newest backup of each of the last N days kept."
    )
    keep_weekly: int = Field(
        default=maintenance.BACKUP_KEEP_WEEKLY, ge=0, description="Newest backup of each of the last M ISO weeks kept."
    )
    export_days: int = Field(
        default=maintenance.EXPORT_RETENTION.days, ge=1, description="Exports older than this many days are deleted."
    )


@asset(**_COMMON, kinds={QDRANT, OBJECTS}, pool=QDRANT_WRITES)
def orphan_repair(
    context: AssetExecutionContext,
    config: DryRunConfig,
    kb: KnowledgeBaseResource,
    vectors: VectorStoreResource,
    objects: ObjectStoreResource,
    embedders: EmbeddersResource,
) -> MaterializeResult:
    """On a Qdrant server, every alias on its container's live generation and none left for a
    container that is gone; points with no active chunk deleted, active chunks with no point written
    (embedded first if the cache lacks them); collections and blobs nothing refers to removed."""
    with operator_errors(), kb.open() as store, knowledge_base_writer(context, store), vectors.open() as qdrant:
        aliases = maintenance.repair_aliases(store, qdrant, dry_run=config.dry_run, log=context.log)
        points = maintenance.repair_orphans(store, qdrant, embedders.get, dry_run=config.dry_run, log=context.log)
        collections = maintenance.drop_orphan_collections(store, qdrant, dry_run=config.dry_run, log=context.log)
        blobs = maintenance.delete_orphan_blobs(store, objects.open(), dry_run=config.dry_run, log=context.log)
    return MaterializeResult(
        metadata={
            "dry_run": config.dry_run,
            "aliases_repaired": len(aliases.aliases),
            "points_deleted": points.deleted,
            "points_written": points.written,
            "chunks_embedded": points.embedded,
            "unrepaired": points.unrepaired,
            "collections_dropped": len(collections.collections),
            "blobs_deleted": blobs.deleted,
            "aliases": table(aliases.table),
            "orphan_points": table(points.table),
            "orphan_collections": table(collections.table),
            "orphan_blobs": table(blobs.table),
        }
    )


@asset(**_COMMON, deps=[orphan_repair], kinds={QDRANT}, pool=QDRANT_WRITES)
def generation_retention(
    context: AssetExecutionContext,
    config: GenerationRetentionConfig,
    kb: KnowledgeBaseResource,
    vectors: VectorStoreResource,
) -> MaterializeResult:
    """Collection generations beyond retention dropped; the one the alias serves never is."""
    with operator_errors(), kb.open() as store, knowledge_base_writer(context, store), vectors.open() as qdrant:
        report = maintenance.prune_old_generations(
            store, qdrant, config.retention, dry_run=config.dry_run, log=context.log
        )
    return MaterializeResult(
        metadata={
            "dry_run": config.dry_run,
            "retention": setting(config.retention),
            "dropped": len(report.generations),
            "generations": table(report.table),
        }
    )


@asset(**_COMMON, deps=[generation_retention], kinds={KB})
def embedding_cache_retention(
    context: AssetExecutionContext, config: DryRunConfig, kb: KnowledgeBaseResource
) -> MaterializeResult:
    """Embedding-cache rows of retired embedder versions (no container and no kept generation uses
    them) pruned, and each container's chunks cut by a chunker none of those versions uses."""
    with operator_errors(), kb.open() as store:
        report = maintenance.prune_embedding_cache(store, dry_run=config.dry_run, log=context.log)
        with knowledge_base_writer(context, store):
            chunks = maintenance.prune_chunks(store, dry_run=config.dry_run, log=context.log)
    return MaterializeResult(
        metadata={
            "dry_run": config.dry_run,
            "rows_deleted": report.rows_deleted,
            "versions": table(report.table),
            "chunks_deleted": chunks.chunks_deleted,
            "chunkers": table(chunks.table),
        }
    )


@asset(**_COMMON, deps=[orphan_repair], kinds={KB, OBJECTS})
def document_retention(
    context: AssetExecutionContext,
    config: DocumentRetentionConfig,
    kb: KnowledgeBaseResource,
    objects: ObjectStoreResource,
) -> MaterializeResult:
    """Archived documents older than the retention period purged with their chunks and unshared blobs."""
    with operator_errors(), kb.open() as store, knowledge_base_writer(context, store):
        report = maintenance.purge_archived_documents(
            store, objects.open(), timedelta(days=config.archived_days), dry_run=config.dry_run, log=context.log
        )
    return MaterializeResult(
        metadata={
            "dry_run": config.dry_run,
            "archived_before": report.cutoff.isoformat(timespec="seconds"),
            "documents_purged": report.documents,
            "blobs_deleted": report.blobs_deleted,
            "containers": table(report.table),
        }
    )


@asset(**_COMMON, kinds={OBJECTS})
def archive_retention(
    context: AssetExecutionContext, config: ArchiveRetentionConfig, objects: ObjectStoreResource
) -> MaterializeResult:
    """Backups beyond the daily/weekly rotation and exports past their age deleted."""
    with operator_errors():
        store = objects.open()
        backups = maintenance.delete_expired_backups(
            store, config.keep_daily, config.keep_weekly, dry_run=config.dry_run, log=context.log
        )
        exports = maintenance.delete_old_exports(
            store, timedelta(days=config.export_days), dry_run=config.dry_run, log=context.log
        )
    return MaterializeResult(
        metadata={
            "dry_run": config.dry_run,
            "backups_deleted": backups.deleted,
            "backups_kept": len(backups.archives) - backups.deleted,
            "exports_deleted": exports.deleted,
            "backups": table(backups.table),
            "exports": table(exports.table),
        }
    )


@asset(**_COMMON, kinds={KB}, deps=[embedding_cache_retention, document_retention])
def database_maintenance(context: AssetExecutionContext, kb: KnowledgeBaseResource) -> MaterializeResult:
    """SQLite: WAL checkpoint, VACUUM, ANALYZE; PostgreSQL: VACUUM ANALYZE of every table."""
    with operator_errors(), kb.open() as store:
        report = maintenance.maintain_database(store, log=context.log)
    return MaterializeResult(
        metadata={
            "backend": report.backend,
            "size_before_bytes": report.size_before,
            "size_after_bytes": report.size_after,
            "steps": table(report.table),
        }
    )


maintenance_assets = [
    orphan_repair,
    generation_retention,
    embedding_cache_retention,
    document_retention,
    archive_retention,
    database_maintenance,
]
