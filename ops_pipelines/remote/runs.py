"""Launch one run of a job through the webserver, follow it, and say why it failed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ops_pipelines.remote import queries
from ops_pipelines.remote.client import DagsterRemote, RemoteError
from ops_pipelines.remote.partitions import CONTAINERS, EMBEDDER_VERSIONS, job_partitioning

# The tag this project puts on every run that works on one container (sensors, schedules, the
# CLI); the production run queue allows one such run per container at a time.
CONTAINER_TAG = "ops/container"
RUN_DONE = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


@dataclass(frozen=True)
class LaunchedRun:
    run_id: str
    job: str
    partition: str | None


@dataclass(frozen=True)
class StepFailure:
    step: str | None  # None: the run failed outside any step
    error: str

    def __str__(self) -> str:
        return f"step {self.step}: {self.error}" if self.step else self.error


@dataclass
class RunOutcome:
    run_id: str
    status: str
    failures: list[StepFailure] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"


def launch_run(
    remote: DagsterRemote,
    job_name: str,
    container: str | None = None,
    embedder_version: str | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> LaunchedRun:
    """Check the job and its partition exist, then submit one run. A partitioned job's partition
    comes from ``container`` (and ``embedder_version`` for refresh_job); a run for a container is
    tagged ``ops/container``."""
    job = remote.job(job_name)
    partitioning = job_partitioning(remote, job)
    tags: dict[str, str] = {}
    partition = None
    if partitioning.dimensions:
        partition = partitioning.key({CONTAINERS: container, EMBEDDER_VERSIONS: embedder_version})
        tags.update(remote.partition_tags(job, partition))
    elif embedder_version:
        raise RemoteError(f"{job_name} is not partitioned by embedder version: pass it in its run config")
    if container:
        tags[CONTAINER_TAG] = container
    return LaunchedRun(remote.launch(job, run_config or {}, tags), job_name, partition)


def follow_run(
    remote: DagsterRemote,
    run_id: str,
    on_status: Callable[[str], None],
    timeout: float | None = None,
    poll_seconds: float = 1.0,
) -> RunOutcome:
    """Poll the run's status until it ends, calling ``on_status`` at each change; a run that
    did not succeed comes back with its failed steps and their errors."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        status = remote.run_status(run_id)
        if status != last:
            on_status(status)
            last = status
        if status in RUN_DONE:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise RemoteError(f"run {run_id} is still {status} after {timeout:.0f} s; follow it at {remote.run_url(run_id)}")
        time.sleep(poll_seconds)
    return RunOutcome(run_id, status, [] if status == "SUCCESS" else run_failures(remote, run_id))


def run_failures(remote: DagsterRemote, run_id: str) -> list[StepFailure]:
    """The run's failed steps with their errors (an operator error's own words, without
    Dagster's wrapping); the run failure's message when no step failed (a canceled run, a run
    worker that died)."""
    steps: list[StepFailure] = []
    run_level: list[StepFailure] = []
    cursor = None
    while True:
        found = remote.query(queries.RUN_EVENTS, {"runId": run_id, "cursor": cursor})["runOrError"]
        if found["__typename"] != "Run":
            raise RemoteError(f"run {run_id}: {found.get('message')}")
        page = found["eventConnection"]
        for event in page["events"]:
            if event["__typename"] == "ExecutionStepFailureEvent":
                steps.append(StepFailure(event["stepKey"], _error_text(event)))
            elif event["__typename"] == "RunFailureEvent":
                run_level.append(StepFailure(None, _error_text(event)))
        if not page["hasMore"]:
            break
        cursor = page["cursor"]
    return steps or run_level or [StepFailure(None, f"the run ended {found['status']} without an error event")]


def _error_text(event: dict) -> str:
    description = (event.get("failureMetadata") or {}).get("description")
    if description:
        return description
    error = (event.get("error") or {}).get("message", "").strip()
    return error or event["message"]
