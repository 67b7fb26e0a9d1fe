"""Backup and restore of the whole knowledge base (metadata DB, collections, blobs). No Dagster imports."""

from ops_pipelines.backup.catalog import BackupNotFound, backup_inventory, list_backups, resolve_backup
from ops_pipelines.backup.format import BACKUP_ARCHIVE, BackupKey, backup_key, parse_backup_key
from ops_pipelines.backup.restore import (
    RestorePlan,
    RestoreRefused,
    RestoreReport,
    plan_restore,
    restore_backup,
    verify_backup,
)
from ops_pipelines.backup.writer import BackupError, write_backup

__all__ = [
    "BACKUP_ARCHIVE",
    "BackupError",
    "BackupKey",
    "BackupNotFound",
    "RestorePlan",
    "RestoreRefused",
    "RestoreReport",
    "backup_inventory",
    "backup_key",
    "list_backups",
    "parse_backup_key",
    "plan_restore",
    "resolve_backup",
    "restore_backup",
    "verify_backup",
    "write_backup",
]
