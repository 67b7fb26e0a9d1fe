"""Backfills through the webserver (the ``launchPartitionBackfill`` mutation the UI sends): a job
over a partition set, or assets over their partitions; the daemon launches the runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ops_pipelines.remote import queries
from ops_pipelines.remote.client import DagsterRemote, JobRef, RemoteError
from ops_pipelines.remote.partitions import (
    CONTAINERS,
    EMBEDDER_VERSIONS,
    Partitioning,
    asset_partitioning,
    job_partitioning,
)
from ops_pipelines.remote.runs import RUN_DONE, StepFailure, run_failures

BACKFILL_DONE = frozenset({"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"})
BACKFILL_FAILED = frozenset({"COMPLETED_FAILED", "FAILED", "CANCELED"})


@dataclass(frozen=True)
class BackfillTarget:
    """A job (backfilled through its partition set) or a selection of assets."""

    label: str
    partitioning: Partitioning
    job: JobRef | None = None
    assets: tuple[str, ...] = ()


@dataclass
class BackfillOutcome:
    backfill_id: str
    status: str
    error: str | None = None
    runs: dict[str, tuple[str, str]] = field(default_factory=dict)  # run id -> (partition, status)
    failures: dict[str, list[StepFailure]] = field(default_factory=dict)  # run id -> its failures

    @property
    def success(self) -> bool:
        return self.status not in BACKFILL_FAILED and not self.failures and self.error is None


def resolve_target(remote: DagsterRemote, name: str) -> BackfillTarget:
    """``name`` is a job, or asset keys separated by commas (``a,b`` or ``prefix/a``)."""
    repositories = remote.repositories()
    if any(name in r.jobs for r in repositories):
        job = remote.job(name, repositories)
        return BackfillTarget(name, job_partitioning(remote, job), job=job)
    assets = tuple(a.strip() for a in name.split(",") if a.strip())
    known = {a for r in repositories for a in r.assets}
    unknown = [a for a in assets if a not in known]
    if unknown or not assets:
        jobs = sorted({j for r in repositories for j in r.jobs})
        raise RemoteError(
            f"{', '.join(unknown) or repr(name)}: no such job or asset at {remote.url}; jobs: {', '.join(jobs)}; "
            f"assets: {', '.join(sorted(known))}"
        )
    return BackfillTarget(", ".join(assets), asset_partitioning(remote, assets), assets=assets)


def partition_keys(
    target: BackfillTarget,
    partitions: Sequence[str] = (),
    all_containers: bool = False,
    embedder_version: str | None = None,
) -> list[str]:
    """The keys to backfill: ``partitions`` as given (each checked), or every container (under
    ``embedder_version`` when the target is partitioned by embedder version too)."""
    partitioning = target.partitioning
    if not partitioning.dimensions:
        raise RemoteError(f"{target.label} is not partitioned: launch it with `ops-pipelines trigger` instead")
    if bool(partitions) == all_containers:
        raise RemoteError("name the partitions with --partitions, or pass --all-containers (one of the two)")
    if partitions:
        if embedder_version:
            raise RemoteError("--embedder-version goes with --all-containers; with --partitions give full keys")
        for key in partitions:
            partitioning.check(key)
        return list(dict.fromkeys(partitions))
    containers = partitioning.dimension(CONTAINERS)
    if containers is None:
        raise RemoteError(f"{target.label} is not partitioned by container: name its partitions with --partitions")
    if not containers.keys:
        raise RemoteError("there are no containers yet: register one with `ops-pipelines container add`")
    return [partitioning.key({CONTAINERS: c, EMBEDDER_VERSIONS: embedder_version}) for c in containers.keys]


def launch_backfill(
    remote: DagsterRemote,
    target: BackfillTarget,
    keys: Sequence[str],
    run_config: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> str:
    """Submit the backfill; its id."""
    params: dict[str, Any] = {"partitionNames": list(keys), "title": title or f"{target.label}: {len(keys)} partitions"}
    if target.job is not None:
        params["selector"] = {
            "partitionSetName": f"{target.job.name}_partition_set",
            "repositorySelector": target.job.repository.selector,
        }
    else:
        params["assetSelection"] = [{"path": asset.split("/")} for asset in target.assets]
    if run_config:
        params["runConfigData"] = dict(run_config)
    result = remote.query(queries.LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    if result["__typename"] == "LaunchBackfillSuccess":
        return result["backfillId"]
    detail = result.get("message") or "; ".join(e["message"] for e in result.get("errors", []))
    raise RemoteError(f"the backfill of {target.label} was refused ({result['__typename']}): {detail}")


def follow_backfill(
    remote: DagsterRemote,
    backfill_id: str,
    on_change: Callable[[str | None, str, str], None],
    timeout: float | None = None,
    poll_seconds: float = 1.0,
) -> BackfillOutcome:
    """Poll the backfill and its runs until the backfill is done and every run it launched has
    ended. ``on_change(None, "", status)`` reports the backfill's status,
    ``on_change(run_id, partition, status)`` a run's; failed runs come back with their failed steps."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: dict[str | None, str] = {}
    while True:
        found = remote.query(queries.BACKFILL, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if found["__typename"] != "PartitionBackfill":
            raise RemoteError(f"backfill {backfill_id}: {found.get('message')}")
        outcome = BackfillOutcome(backfill_id, found["status"], (found["error"] or {}).get("message"))
        for run in reversed(found["runs"]):  # oldest first
            tags = {t["key"]: t["value"] for t in run["tags"]}
            outcome.runs[run["runId"]] = (tags.get("dagster/partition", ""), run["status"])
        for key, (partition, status) in [(None, ("", outcome.status)), *outcome.runs.items()]:
            if seen.get(key) != status:
                on_change(key, partition, status)
                seen[key] = status
        if outcome.status in BACKFILL_DONE and all(s in RUN_DONE for _, s in outcome.runs.values()):
            break
        if deadline is not None and time.monotonic() > deadline:
            raise RemoteError(
                f"backfill {backfill_id} is still {outcome.status} after {timeout:.0f} s; "
                f"follow it at {remote.backfill_url(backfill_id)}"
            )
        time.sleep(poll_seconds)
    for run_id, (_, status) in outcome.runs.items():
        if status != "SUCCESS":
            outcome.failures[run_id] = run_failures(remote, run_id)
    return outcome
