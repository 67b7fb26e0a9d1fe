"""Sync freshness of containers, on SQLite and PostgreSQL, aged by rewriting their sync time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from ops_pipelines import settings
from ops_pipelines.freshness import FRESH, NEVER, STALE, sync_freshness
from ops_pipelines.kb import schema
from ops_pipelines.kb.clock import utcnow


def _synced_ago(kb, container_id: str, age: timedelta) -> None:
    with kb.engine.begin() as conn:
        conn.execute(
            update(schema.containers)
            .where(schema.containers.c.id == container_id)
            .values(last_synced_at=utcnow() - age)
        )


def test_stale_and_never_synced_containers_are_listed_oldest_first(kb, corpus):
    old = kb.add_container("old", "folder", str(corpus), "hash-256@1")
    older = kb.add_container("older", "folder", str(corpus), "hash-256@1")
    fresh = kb.add_container("fresh", "folder", str(corpus), "hash-256@1")
    kb.add_container("new", "folder", str(corpus), "hash-256@1")
    _synced_ago(kb, old.id, timedelta(hours=30))
    _synced_ago(kb, older.id, timedelta(hours=50))
    kb.mark_synced(fresh.id)

    report = sync_freshness(kb.list_containers(), timedelta(hours=24))

    assert [c.slug for c in report.stale] == ["new", "older", "old"]
    statuses = {c.slug: c.status(report.max_age) for c in report.containers}
    assert statuses == {"old": STALE, "older": STALE, "fresh": FRESH, "new": NEVER}
    assert report.summary() == (
        "3 of 4 containers not synced within 24 h: new (never synced), older (50 h), old (30 h)"
    )
    table = report.table()
    assert list(table["container"]) == ["new", "older", "old", "fresh"]
    assert table.loc[table["container"] == "old", "age_hours"].item() == pytest.approx(30, abs=0.1)


def test_all_fresh_and_no_containers(kb, corpus):
    c = kb.add_container("one", "folder", str(corpus), "hash-256@1")
    kb.mark_synced(c.id)
    report = sync_freshness(kb.list_containers(), timedelta(hours=24))
    assert report.stale == [] and report.summary() == "all 1 containers synced within 24 h"
    # The same container a day and a half later, by the clock the check is given.
    later = sync_freshness(kb.list_containers(), timedelta(hours=24), now=utcnow() + timedelta(hours=36))
    assert [s.slug for s in later.stale] == ["one"]
    assert sync_freshness([], timedelta(hours=1)).summary() == "no containers"


def test_max_age_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("OPS_SYNC_MAX_AGE_HOURS", raising=False)
    assert settings.sync_max_age_hours() == 24.0
    monkeypatch.setenv("OPS_SYNC_MAX_AGE_HOURS", "1.5")
    assert settings.sync_max_age_hours() == 1.5
    for bad in ("soon", "0", "-3", "inf", "nan"):
        monkeypatch.setenv("OPS_SYNC_MAX_AGE_HOURS", bad)
        with pytest.raises(ValueError, match="OPS_SYNC_MAX_AGE_HOURS=.* is not a positive number of hours"):
            settings.sync_max_age_hours()
