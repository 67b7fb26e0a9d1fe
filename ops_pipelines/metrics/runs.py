"""What the metrics endpoint says of the Dagster runs, as plain values (the CLI reads them from the
Dagster instance, ``ops_pipelines.cli.metrics``; nothing here imports Dagster)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The run keys of the source-change sensor's retries (``defs/sync/sensors.py``): a repeated request
# ends in ``:retry-N`` (then ``~M`` if that key was taken), a trial after a source failure has
# ``:retry:<failures>:<time>`` in it.
_RETRY_KEY = re.compile(r":retry-\d+(~\d+)?$|:retry:\d+:")


def is_retry_key(run_key: str | None) -> bool:
    """Whether a run key marks a retry of a sync."""
    return bool(run_key) and _RETRY_KEY.search(run_key) is not None


@dataclass
class RunStats:
    window_s: float  # runs created, failed steps and retries are counted over this many seconds
    stuck_after_s: float  # a run started longer ago than this and still running is stuck
    recent: dict[tuple[str, str], int] = field(default_factory=dict)  # (job, status) -> runs created in the window
    unfinished: dict[tuple[str, str], int] = field(default_factory=dict)  # (job, status) -> queued/running, any age
    stuck: dict[str, int] = field(default_factory=dict)  # job -> runs started before now - stuck_after_s, running
    oldest_running_s: float = 0.0  # how long the longest-running run has been running (0: none runs)
    step_failures: dict[tuple[str, str], int] = field(default_factory=dict)  # (job, step) -> failed steps in the window
    sync_retries: dict[str, int] = field(default_factory=dict)  # container -> retry runs created in the window
