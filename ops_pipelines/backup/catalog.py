"""The backups in the object store, newest first."""

from __future__ import annotations

from ops_pipelines.archives.format import ArchiveError
from ops_pipelines.backup.format import PREFIX, BackupKey, parse_backup_key
from ops_pipelines.objects import ObjectStore


class BackupNotFound(ArchiveError):
    pass


def list_backups(objects: ObjectStore) -> list[BackupKey]:
    """Every key under ``backups/`` named as ``backup_key`` names them, newest first."""
    found = (parse_backup_key(key) for key in objects.list(PREFIX))
    return sorted((b for b in found if b is not None), key=lambda b: b.created_at, reverse=True)


def resolve_backup(objects: ObjectStore, reference: str) -> str:
    """``latest``, a run id, or a key/path/URL (returned as is, for ``fetch_archive``)."""
    if reference == "latest" or not ("/" in reference or "." in reference):
        backups = list_backups(objects)
        if reference != "latest":
            backups = [b for b in backups if b.run_id == reference or b.run_id.startswith(reference)]
        if not backups:
            raise BackupNotFound(
                f"no backup {'at all' if reference == 'latest' else f'of run {reference!r}'} under {PREFIX} in "
                f"{objects.description}: list them with `ops-pipelines backup list`"
            )
        return backups[0].key
    return reference


def backup_inventory(objects: ObjectStore) -> list[dict]:
    """One row per backup, newest first: key, created_at, run_id, mb (``ops-pipelines backup list``)."""
    return [
        {"key": b.key, "created_at": b.created_at.isoformat(timespec="seconds"), "run_id": b.run_id,
         "mb": round(objects.size(b.key) / 1e6, 2)}
        for b in list_backups(objects)
    ]
