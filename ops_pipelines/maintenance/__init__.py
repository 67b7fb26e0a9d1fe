"""The weekly maintenance, step by step, in plain Python (``defs/maintenance`` wires it to Dagster).

Each step is idempotent, returns a frozen report whose ``table`` is a pandas DataFrame of what it
found and did, takes ``dry_run`` when it deletes anything (the report then says what it would
delete), and expects that nothing else writes to the knowledge base while it runs.
"""

from ops_pipelines.maintenance.aliases import AliasRepairReport, repair_aliases
from ops_pipelines.maintenance.archives import (
    BACKUP_KEEP_DAILY,
    BACKUP_KEEP_WEEKLY,
    EXPORT_RETENTION,
    ArchiveRetentionReport,
    delete_expired_backups,
    delete_old_exports,
    expired_backups,
    retained_backups,
)
from ops_pipelines.maintenance.database import DatabaseReport, maintain_database
from ops_pipelines.maintenance.documents import (
    ARCHIVED_DOCUMENT_RETENTION,
    DocumentPurgeReport,
    purge_archived_documents,
)
from ops_pipelines.maintenance.orphans import (
    CHUNK_WITHOUT_POINT,
    POINT_WITHOUT_CHUNK,
    OrphanBlobsReport,
    OrphanCollectionsReport,
    OrphanRepairReport,
    delete_orphan_blobs,
    drop_orphan_collections,
    find_orphans,
    repair_orphans,
)
from ops_pipelines.maintenance.retention import (
    GENERATION_RETENTION,
    CachePruneReport,
    GenerationRetentionReport,
    prune_chunks,
    prune_embedding_cache,
    prune_old_generations,
)

__all__ = [
    "ARCHIVED_DOCUMENT_RETENTION",
    "AliasRepairReport",
    "BACKUP_KEEP_DAILY",
    "BACKUP_KEEP_WEEKLY",
    "CHUNK_WITHOUT_POINT",
    "EXPORT_RETENTION",
    "GENERATION_RETENTION",
    "POINT_WITHOUT_CHUNK",
    "ArchiveRetentionReport",
    "CachePruneReport",
    "DatabaseReport",
    "DocumentPurgeReport",
    "GenerationRetentionReport",
    "OrphanBlobsReport",
    "OrphanCollectionsReport",
    "OrphanRepairReport",
    "delete_expired_backups",
    "delete_old_exports",
    "delete_orphan_blobs",
    "drop_orphan_collections",
    "expired_backups",
    "find_orphans",
    "maintain_database",
    "prune_chunks",
    "prune_embedding_cache",
    "prune_old_generations",
    "purge_archived_documents",
    "repair_aliases",
    "repair_orphans",
    "retained_backups",
]
