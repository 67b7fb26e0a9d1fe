"""What the maintenance steps share: report rows as DataFrames, and UTC times to compare ages with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import astuple, fields
from datetime import UTC, datetime, timedelta

import pandas as pd

from ops_pipelines.kb.clock import utcnow


def frame(row_type: type, rows: Iterable) -> pd.DataFrame:
    """Dataclass rows as a DataFrame, one column per field, with the columns even when empty."""
    return pd.DataFrame([astuple(r) for r in rows], columns=[f.name for f in fields(row_type)])


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC, the zone the database stores and backup names use."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone: pass an aware datetime")
    return moment.astimezone(UTC)


def cutoff(older_than: timedelta, now: datetime | None = None) -> datetime:
    """The moment ``older_than`` before ``now`` (default: the current time), in UTC."""
    return (utcnow() if now is None else as_utc(now)) - older_than
