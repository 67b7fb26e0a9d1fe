"""Retention of the archives in the object store: backups by a daily/weekly rotation, exports by age.

Backups are named ``backups/<YYYYmmddTHHMMSSZ>_<run id>.tar``: the time they were taken is in the
name, independent of when the object was last copied. Exports (``exports/<container id>/<run
id>.<tar|zip>``) carry no time in their name, so their age is the object store's last-modified
time, which both backends report with the listing. A key that is not named as expected is
reported and never deleted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from ops_pipelines.backup.format import PREFIX as BACKUP_PREFIX
from ops_pipelines.backup.format import parse_backup_key
from ops_pipelines.maintenance.common import as_utc, cutoff, frame
from ops_pipelines.objects import ObjectStore

_log = logging.getLogger(__name__)

BACKUP_KEEP_DAILY = 7
BACKUP_KEEP_WEEKLY = 4
EXPORT_RETENTION = timedelta(days=30)

DELETED, WOULD_DELETE, UNRECOGNISED = "deleted", "would delete", "kept: name not recognised"
_EXPORT_KEY = re.compile(r"^exports/[^/]+/[^/]+\.(tar|zip)$")


@dataclass(frozen=True)
class StoredArchive:
    key: str
    timestamp: datetime | None  # a backup's time from its name, an export's last-modified time
    action: str  # why it is kept ("kept: ..."), or DELETED / WOULD_DELETE


@dataclass(frozen=True)
class ArchiveRetentionReport:
    archives: tuple[StoredArchive, ...]
    dry_run: bool

    @property
    def deleted(self) -> int:
        return sum(a.action in (DELETED, WOULD_DELETE) for a in self.archives)

    @property
    def unrecognised(self) -> list[str]:
        return [a.key for a in self.archives if a.action == UNRECOGNISED]

    @property
    def table(self) -> pd.DataFrame:
        return frame(StoredArchive, self.archives)


def retained_backups(backups: Iterable[tuple[str, datetime]], keep_daily: int, keep_weekly: int) -> dict[str, str]:
    """The backups to keep, each with why: the newest of each of the ``keep_daily`` most recent
    days that have a backup, the newest of each of the ``keep_weekly`` most recent ISO weeks that
    have one, and the newest of all in any case. Days and weeks are UTC; they count only when a
    backup was taken in them, so backups that stopped a while ago are not all expired."""
    if keep_daily < 0 or keep_weekly < 0:
        raise ValueError("keep_daily and keep_weekly must be 0 or more")
    newest_first = sorted(((as_utc(at), key) for key, at in backups), reverse=True)
    reasons: dict[str, list[str]] = {}
    days: set = set()
    weeks: set = set()
    for at, key in newest_first:
        day, week = at.date(), at.isocalendar()[:2]
        if day not in days:
            days.add(day)
            if len(days) <= keep_daily:
                reasons.setdefault(key, []).append("daily")
        if week not in weeks:
            weeks.add(week)
            if len(weeks) <= keep_weekly:
                reasons.setdefault(key, []).append("weekly")
    if newest_first:
        reasons.setdefault(newest_first[0][1], ["newest"])
    return {key: "kept: " + ", ".join(why) for key, why in reasons.items()}


def expired_backups(backups: Iterable[tuple[str, datetime]], keep_daily: int, keep_weekly: int) -> list[str]:
    """The keys ``retained_backups`` does not keep, sorted."""
    backups = list(backups)
    kept = retained_backups(backups, keep_daily, keep_weekly)
    return sorted(key for key, _ in backups if key not in kept)


def delete_expired_backups(
    objects: ObjectStore,
    keep_daily: int = BACKUP_KEEP_DAILY,
    keep_weekly: int = BACKUP_KEEP_WEEKLY,
    dry_run: bool = False,
    log: logging.Logger = _log,
) -> ArchiveRetentionReport:
    """Delete the backups under ``backups/`` that ``retained_backups`` does not keep."""
    keys = sorted(objects.list(BACKUP_PREFIX))
    dated = {key: parsed.created_at for key in keys if (parsed := parse_backup_key(key)) is not None}
    kept = retained_backups(dated.items(), keep_daily, keep_weekly)
    archives = []
    for key in keys:
        if key not in dated:
            log.warning("backup retention: %s is not named like a backup, kept", key)
            action = UNRECOGNISED
        else:
            action = kept.get(key) or _delete(objects, key, dry_run)
        archives.append(StoredArchive(key, dated.get(key), action))
    report = ArchiveRetentionReport(tuple(archives), dry_run)
    done = "to delete" if dry_run else "deleted"
    log.info("backups: %d kept, %d %s", len(keys) - report.deleted, report.deleted, done)
    return report


def delete_old_exports(
    objects: ObjectStore,
    older_than: timedelta = EXPORT_RETENTION,
    now: datetime | None = None,
    dry_run: bool = False,
    log: logging.Logger = _log,
) -> ArchiveRetentionReport:
    """Delete export archives last modified more than ``older_than`` ago."""
    oldest_kept = cutoff(older_than, now)
    archives = []
    for key, modified in sorted(objects.list_modified("exports/")):
        if not _EXPORT_KEY.match(key):
            log.warning("export retention: %s is not named like an export, kept", key)
            action = UNRECOGNISED
        elif modified >= oldest_kept:
            action = "kept"
        else:
            action = _delete(objects, key, dry_run)
        archives.append(StoredArchive(key, modified, action))
    report = ArchiveRetentionReport(tuple(archives), dry_run)
    done = "to delete" if dry_run else "deleted"
    log.info("exports older than %s: %d %s", oldest_kept.isoformat(), report.deleted, done)
    return report


def _delete(objects: ObjectStore, key: str, dry_run: bool) -> str:
    if dry_run:
        return WOULD_DELETE
    objects.delete(key)
    return DELETED

