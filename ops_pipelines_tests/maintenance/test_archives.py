"""Backup rotation (table-driven over dates) and export age limits, on a folder and a real S3 server."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

import pytest

from ops_pipelines.backup import parse_backup_key
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.maintenance import (
    delete_expired_backups,
    delete_old_exports,
    expired_backups,
    retained_backups,
)
from ops_pipelines.objects import FolderObjectStore


@pytest.fixture(params=["folder", "s3"])
def objects(request, tmp_path):
    if request.param == "folder":
        return FolderObjectStore(tmp_path / "objects")
    return request.getfixturevalue("s3_server").store()


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def backups(*times: str) -> list[tuple[str, datetime]]:
    """Each backup keyed by its own time, so expected keys read as times."""
    return [(t, at(t)) for t in times]


NIGHTLY = [f"2025-03-{day:02d} 02:00" for day in range(1, 22)]  # Sat 1 .. Fri 21 March 2025

CASES = {
    # name: (backups, keep_daily, keep_weekly, the ones kept)
    "daily: the last 7 nights": (NIGHTLY, 7, 0, NIGHTLY[-7:]),
    "daily: newest of a day with two": (
        ["2025-03-20 02:00", "2025-03-21 02:00", "2025-03-21 14:00"], 2, 0, ["2025-03-20 02:00", "2025-03-21 14:00"]
    ),
    "daily: days without backups do not count": (
        ["2025-01-02 02:00", "2025-01-05 02:00", "2025-02-20 02:00", "2025-02-28 02:00"], 3, 0,
        ["2025-01-05 02:00", "2025-02-20 02:00", "2025-02-28 02:00"],
    ),
    "daily: fewer days than kept": (
        ["2025-03-20 02:00", "2025-03-21 02:00"], 7, 4, ["2025-03-20 02:00", "2025-03-21 02:00"]
    ),
    "weekly: newest of each ISO week (Mon-Sun)": (
        NIGHTLY, 0, 3, ["2025-03-09 02:00", "2025-03-16 02:00", "2025-03-21 02:00"]
    ),
    "weekly: ISO weeks across a year end": (
        ["2024-12-22 02:00", "2024-12-28 02:00", "2024-12-29 02:00", "2024-12-30 02:00", "2025-01-01 02:00"], 0, 2,
        ["2024-12-29 02:00", "2025-01-01 02:00"],  # Sun 29 Dec closes 2024-W52; Mon 30 Dec opens 2025-W01
    ),
    "daily and weekly together": (
        NIGHTLY, 2, 3, ["2025-03-09 02:00", "2025-03-16 02:00", "2025-03-20 02:00", "2025-03-21 02:00"]
    ),
    "nothing kept by policy: still the newest": (NIGHTLY, 0, 0, ["2025-03-21 02:00"]),
    "one backup": (["2025-03-21 02:00"], 1, 1, ["2025-03-21 02:00"]),
    "no backups": ([], 7, 4, []),
}


@pytest.mark.parametrize("name", CASES)
def test_backup_rotation(name):
    times, keep_daily, keep_weekly, kept = CASES[name]
    shuffled = random.Random(name).sample(backups(*times), len(times))
    assert sorted(retained_backups(shuffled, keep_daily, keep_weekly)) == sorted(kept)
    assert expired_backups(shuffled, keep_daily, keep_weekly) == sorted(set(times) - set(kept))


def test_backup_rotation_says_why_each_is_kept_and_refuses_negative_counts():
    kept = retained_backups(backups(*NIGHTLY), 2, 3)
    assert kept == {
        "2025-03-21 02:00": "kept: daily, weekly",
        "2025-03-20 02:00": "kept: daily",
        "2025-03-16 02:00": "kept: weekly",
        "2025-03-09 02:00": "kept: weekly",
    }
    assert retained_backups(backups(*NIGHTLY), 0, 0) == {"2025-03-21 02:00": "kept: newest"}
    with pytest.raises(ValueError, match="0 or more"):
        retained_backups(backups(*NIGHTLY), -1, 4)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("backups/20250321T020000Z_3f2a9c1e-7b4d-4e8a-9c1f-0a1b2c3d4e5f.tar", at("2025-03-21 02:00")),
        ("backups/20250321T020000Z_run.tar.part", None),
        ("backups/20250321T020000Z_run.zip", None),
        ("backups/20250231T020000Z_run.tar", None),  # 31 February
        ("backups/2025-03-21_run.tar", None),
        ("backups/nested/20250321T020000Z_run.tar", None),
        ("exports/20250321T020000Z_run.tar", None),
    ],
)
def test_backup_times_come_from_the_key_name(key, expected):
    parsed = parse_backup_key(key)
    assert (parsed.created_at if parsed else None) == expected


def test_expired_backups_are_deleted_and_unrecognised_keys_kept(objects):
    names = [f"backups/{t:%Y%m%dT%H%M%SZ}_run-{t:%d}.tar" for t in (at(n) for n in NIGHTLY)]
    strangers = ["backups/README.txt", "backups/20250231T020000Z_run.tar", "backups/20250301T020000Z_run.zip"]
    for key in [*names, *strangers, "exports/c1/run.tar"]:
        objects.put_bytes(key, b"archive")

    dry = delete_expired_backups(objects, keep_daily=7, keep_weekly=4, dry_run=True)
    assert dry.deleted == len(NIGHTLY) - 9  # kept: 15..21 daily (21 and 16 weekly too), 2 and 9 weekly
    assert len(list(objects.list("backups/"))) == len(names) + len(strangers)

    report = delete_expired_backups(objects, keep_daily=7, keep_weekly=4)
    assert sorted(report.unrecognised) == sorted(strangers)
    assert report.deleted == len(NIGHTLY) - 9
    kept_nights = [names[i - 1] for i in (2, 9, *range(15, 22))]
    assert sorted(objects.list("backups/")) == sorted([*kept_nights, *strangers])
    assert objects.exists("exports/c1/run.tar")
    table = report.table.set_index("key")
    assert table.loc[names[0], "action"] == "deleted" and table.loc[names[-1], "action"] == "kept: daily, weekly"
    assert table.loc[names[0], "timestamp"] == at(NIGHTLY[0])
    assert delete_expired_backups(objects, keep_daily=7, keep_weekly=4).deleted == 0


def test_exports_are_deleted_by_last_modified_time(objects):
    exports = ["exports/c1/run-a.tar", "exports/c2/run-b.zip"]
    for key in [*exports, "exports/README.txt", "backups/20250321T020000Z_run.tar"]:
        objects.put_bytes(key, b"archive")

    fresh = delete_old_exports(objects, older_than=timedelta(days=30))
    assert fresh.deleted == 0 and set(fresh.table.action) == {"kept", "kept: name not recognised"}
    modified = fresh.table.set_index("key").timestamp
    assert all(abs(modified[key] - utcnow()) < timedelta(minutes=5) for key in exports)

    month_later = utcnow() + timedelta(days=31)
    assert delete_old_exports(objects, older_than=timedelta(days=30), now=month_later, dry_run=True).deleted == 2
    report = delete_old_exports(objects, older_than=timedelta(days=30), now=month_later)
    assert report.deleted == 2 and report.unrecognised == ["exports/README.txt"]
    assert sorted(objects.list()) == ["backups/20250321T020000Z_run.tar", "exports/README.txt"]


def test_only_exports_older_than_the_limit_go(tmp_path):
    objects = FolderObjectStore(tmp_path / "objects")
    for key in ("exports/c1/old.tar", "exports/c1/new.zip"):
        objects.put_bytes(key, b"archive")
    forty_days_ago = (utcnow() - timedelta(days=40)).timestamp()
    os.utime(objects.path("exports/c1/old.tar"), (forty_days_ago, forty_days_ago))

    report = delete_old_exports(objects, older_than=timedelta(days=30))
    assert dict(zip(report.table.key, report.table.action, strict=True)) == {
        "exports/c1/new.zip": "kept",
        "exports/c1/old.tar": "deleted",
    }
    assert list(objects.list()) == ["exports/c1/new.zip"]
