"""The one way a command runs a job of the code location: in this process, on the instance in
``DAGSTER_HOME`` (so the UI shows the run), with only the Definitions of the capability the job
belongs to (a sync imports the sync assets, not those of backup or maintenance), a failure
reported in the operator's words."""

from __future__ import annotations

from importlib import import_module

import click

from ops_pipelines.cli import common

# The capability (ops_pipelines.defs.<name>) whose defs hold each job the commands run.
CAPABILITIES = {
    "sync_job": "sync",
    "refresh_job": "refresh",
    "rollback_job": "refresh",
    "export_job": "export",
    "import_job": "export",
    "backup_job": "backup",
    "restore_job": "backup",
}


def job_definition(job_name: str):
    from ops_pipelines.defs.location import location

    # Built now, not at import: resources follow this process's current settings.
    return location(import_module(f"ops_pipelines.defs.{CAPABILITIES[job_name]}").defs).resolve_job_def(job_name)


def run_job(job_name: str, run_config: dict, *, partition=None, container: str = "", instance=None) -> JobRun:
    result = job_definition(job_name).execute_in_process(
        instance=instance or common.instance(),
        partition_key=partition,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}, **run_config},
        tags={"ops/container": container},
        raise_on_error=False,
    )
    return JobRun(result)


class JobRun:
    """A finished run and what its steps reported."""

    def __init__(self, result):
        self.result = result
        self.run_id = result.run_id
        self.success = result.success

    def raise_on_failure(self, what: str) -> None:
        if not self.success:
            raise click.ClickException(f"{what} failed (run {self.run_id}): {failure_reason(self.result)}")

    def materialization(self, node: str) -> tuple[str | None, dict]:
        """The partition and metadata values of the last materialization ``node`` reported."""
        mat = self.result.asset_materializations_for_node(node)[-1]
        return mat.partition, {k: v.value for k, v in mat.metadata.items()}

    def materializations(self, nodes) -> dict[str, dict]:
        """Metadata values of each of ``nodes`` that materialized something."""
        return {n: self.materialization(n)[1] for n in nodes if self.result.asset_materializations_for_node(n)}

    def observation(self) -> dict:
        """Metadata values of the run's one asset observation."""
        (obs,) = [
            e.event_specific_data.asset_observation
            for e in self.result.all_events
            if e.event_type_value == "ASSET_OBSERVATION"
        ]
        return {k: v.value for k, v in obs.metadata.items()}

    def checks(self) -> list[tuple[str, bool, str]]:
        evaluations = [e.asset_check_evaluation_data for e in self.result.all_events
                       if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        return [(c.check_name, c.passed, c.description or "") for c in evaluations]


def failure_reason(result) -> str:
    """The first failed step's message: an operator error's own words, without Dagster's wrapping."""
    failure = next((e for e in result.all_events if e.is_step_failure), None)
    if failure is None:
        return "see the run in the UI"
    data = failure.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip()


def require_partition(instance, slug: str, hint: str) -> None:
    """Refuse a container that has no ``containers`` partition (the job would fail less clearly)."""
    from ops_pipelines.defs.partitions import containers_partitions

    if not instance.has_dynamic_partition(containers_partitions.name, slug):
        raise click.ClickException(f"container {slug!r} is not registered: {hint}")
