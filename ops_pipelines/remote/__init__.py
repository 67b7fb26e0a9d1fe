"""Operate a running Dagster deployment through its webserver's GraphQL API: launch runs and
backfills, follow them, report failures. Plain Python with the dagster-graphql client: nothing
here loads the code location's definitions, so it works against any webserver it can reach."""

from ops_pipelines.remote.backfills import (
    BackfillOutcome,
    BackfillTarget,
    follow_backfill,
    launch_backfill,
    partition_keys,
    resolve_target,
)
from ops_pipelines.remote.client import DagsterRemote, JobRef, RemoteError, Repository
from ops_pipelines.remote.runs import CONTAINER_TAG, LaunchedRun, RunOutcome, StepFailure, follow_run, launch_run

__all__ = [
    "CONTAINER_TAG",
    "BackfillOutcome",
    "BackfillTarget",
    "DagsterRemote",
    "JobRef",
    "LaunchedRun",
    "RemoteError",
    "Repository",
    "RunOutcome",
    "StepFailure",
    "follow_backfill",
    "follow_run",
    "launch_backfill",
    "launch_run",
    "partition_keys",
    "resolve_target",
]
