"""The knowledge-base backup, format version 3 (documented in docs/backup-and-maintenance.md, "Backup format").

A tar (POSIX pax, uncompressed) whose first member is ``manifest.json``, read and verified by the
same safe reader as container archives (``archives.reader``):

    manifest.json                      format, format_version, created_at, run_id, database
                                       (dialect, schema_version), containers, collections,
                                       options, counts, members: [{name, size, sha256}] of
                                       every other member but the blobs, and blobs: {count,
                                       bytes}
    database.sqlite                    every knowledge-base table, as a SQLite database (the
                                       SQLite online backup of an embedded KB; a copy of the
                                       rows of one REPEATABLE READ transaction of PostgreSQL)
    collections/<name>/shard/<path>    a live or retained collection generation of the embedded
                                       engine: its Qdrant Edge shard's files, index included
                                       (the collection's ``layout`` is ``shard``)
    collections/<name>/points.jsonl    or, from a Qdrant server (``layout`` ``points``, and every
                                       collection of a version 1 backup, which is still read):
                                       one {"id", "payload"}
                                       object per point
    collections/<name>/vectors.npy     float32 (points x dimension), row i = line i above
    blobs/<sha256>                     optional: the raw bytes the documents were read from,
                                       after the other members, in ascending name order; counted,
                                       not listed (versions 1 and 2 listed them; see
                                       ``archives.format``)

Stored at ``backups/<YYYYmmddTHHMMSSZ>_<run id>.tar``: names sort by time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from ops_pipelines.archives.format import ArchiveSpec

FORMAT = "ops-pipelines/kb-backup"
FORMAT_VERSION = 3  # 2 added the shard layout, 3 counts the blobs: an older reader refuses each by its version
DATABASE = "database.sqlite"
COLLECTION_PREFIX = "collections/"
POINTS = "points.jsonl"
VECTORS = "vectors.npy"
SHARD = "shard"  # a collection's layout: its Qdrant Edge shard's files, under collections/<name>/shard/
POINTS_LAYOUT = "points"  # the other layout: points.jsonl and vectors.npy
PREFIX = "backups/"

_SHARD_PATH = r"(?!\.)[A-Za-z0-9_.-]{1,100}(/(?!\.)[A-Za-z0-9_.-]{1,100}){0,6}"  # no "." or ".." part
MEMBER_NAME = re.compile(
    r"^(database\.sqlite|collections/kb_[a-z0-9_-]{1,250}/(points\.jsonl|vectors\.npy|shard/" + _SHARD_PATH + r")"
    r"|blobs/[0-9a-f]{64})$"
)
BACKUP_ARCHIVE = ArchiveSpec(
    FORMAT, FORMAT_VERSION, MEMBER_NAME, ("database", "options", "counts"), older_versions=(1, 2), blobs_counted_from=3
)

_KEY = re.compile(r"^backups/(\d{8}T\d{6}Z)_([A-Za-z0-9-]+)\.tar$")
_STAMP = "%Y%m%dT%H%M%SZ"


def collection_member(collection: str, part: str) -> str:
    return f"{COLLECTION_PREFIX}{collection}/{part}"


def backup_key(created_at: datetime, run_id: str) -> str:
    return f"{PREFIX}{created_at.astimezone(UTC).strftime(_STAMP)}_{run_id or 'manual'}.tar"


@dataclass(frozen=True)
class BackupKey:
    key: str
    created_at: datetime
    run_id: str


def parse_backup_key(key: str) -> BackupKey | None:
    """The time and run of a backup from its key; None for a key not written by ``backup_key``."""
    match = _KEY.match(key)
    if match is None:
        return None
    try:
        created = datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)
    except ValueError:  # 20250231T250000Z: the right shape, not a time
        return None
    return BackupKey(key, created, match.group(2))
