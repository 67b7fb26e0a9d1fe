"""Sync freshness: which containers have not synced within their window, and how old they are.

A container's sync time is set by the last step of a successful sync (``live_collection`` calls
``KnowledgeBase.mark_synced``), so a sync that keeps failing, a schedule that is off while the
source never changes, or a sensor that cannot reach the source all show up here as age.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from ops_pipelines.kb import Container
from ops_pipelines.kb.clock import utcnow

FRESH, STALE, NEVER = "fresh", "stale", "never synced"


@dataclass(frozen=True)
class ContainerAge:
    slug: str
    last_synced_at: datetime | None
    age: timedelta | None

    def status(self, max_age: timedelta) -> str:
        if self.age is None:
            return NEVER
        return STALE if self.age > max_age else FRESH

    @property
    def age_hours(self) -> float | None:
        return None if self.age is None else round(self.age.total_seconds() / 3600, 1)


@dataclass(frozen=True)
class FreshnessReport:
    max_age: timedelta
    containers: list[ContainerAge]

    @property
    def stale(self) -> list[ContainerAge]:
        """Containers past the window or never synced, oldest first (never synced at the top)."""
        late = [c for c in self.containers if c.status(self.max_age) != FRESH]
        return sorted(late, key=lambda c: (c.age is not None, -(c.age or timedelta()).total_seconds()))

    @property
    def max_age_hours(self) -> float:
        return round(self.max_age.total_seconds() / 3600, 2)

    def summary(self) -> str:
        if not self.containers:
            return "no containers"
        if not self.stale:
            return f"all {len(self.containers)} containers synced within {self.max_age_hours:g} h"
        late = ", ".join(
            f"{c.slug} ({NEVER if c.age is None else f'{c.age_hours:g} h'})" for c in self.stale[:10]
        )
        more = f" and {len(self.stale) - 10} more" if len(self.stale) > 10 else ""
        return (
            f"{len(self.stale)} of {len(self.containers)} containers not synced within "
            f"{self.max_age_hours:g} h: {late}{more}"
        )

    def table(self) -> pd.DataFrame:
        """One row per container, stale ones first."""
        late = self.stale
        rows = late + [c for c in self.containers if c not in late]
        return pd.DataFrame(
            [
                {
                    "container": c.slug,
                    "status": c.status(self.max_age),
                    "age_hours": c.age_hours,
                    "last_synced_at": c.last_synced_at.isoformat(timespec="seconds") if c.last_synced_at else None,
                }
                for c in rows
            ],
            columns=["container", "status", "age_hours", "last_synced_at"],
        )


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; the store writes UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sync_freshness(
    containers: Iterable[Container], max_age: timedelta, now: datetime | None = None
) -> FreshnessReport:
    now = utcnow() if now is None else _utc(now)
    ages = []
    for c in containers:
        synced = _utc(c.last_synced_at) if c.last_synced_at else None
        ages.append(ContainerAge(c.slug, synced, None if synced is None else max(now - synced, timedelta())))
    return FreshnessReport(max_age, ages)
