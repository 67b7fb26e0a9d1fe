"""The one way a command runs a job of the code location: in this process, on the instance in
``DAGSTER_HOME`` (so the UI shows the run), with only the Definitions of the capability the job
belongs to (a sync imports the sync assets, not those of backup or maintenance), a failure
reported in the operator's words.

The run prints its progress (Dagster's INFO lines) as it goes; a failure is said once, by the
command's ``Error:`` line, without Dagster's failure events and their stack traces. With
``ops-pipelines --debug`` the run prints everything, DEBUG events and stack traces included.
"""

from __future__ import annotations

import logging

import click

from ops_pipelines.cli import common

# The capability (the folder ops_pipelines/defs/<name>) that holds each job the commands run.
CAPABILITIES = {
    "sync_job": "sync",
    "refresh_job": "refresh",
    "rollback_job": "refresh",
    "export_job": "export",
    "import_job": "export",
    "backup_job": "backup",
    "restore_job": "backup",
    "maintenance_job": "maintenance",
}


class RunFailed(click.ClickException):
    """A job-backed command's run failed: what the command did, the run id, and the failed step's
    message (an operator error's own words)."""


def job_definition(job_name: str, loggers: dict | None = None):
    from dagster import Definitions

    from ops_pipelines.defs.location import load_capability, shared

    extra = [Definitions(loggers=loggers)] if loggers else []
    # Built now, not at import: resources follow this process's current settings.
    return Definitions.merge(load_capability(CAPABILITIES[job_name]), shared(), *extra).resolve_job_def(job_name)


def run_job(job_name: str, run_config: dict, *, partition=None, container: str = "", instance=None) -> JobRun:
    debug = common.debugging()
    result = job_definition(job_name, {"console": console_logger(debug)}).execute_in_process(
        instance=instance or common.instance(),
        partition_key=partition,
        run_config={"loggers": {"console": {"config": {"log_level": "DEBUG" if debug else "INFO"}}}, **run_config},
        tags={"ops/container": container},
        raise_on_error=False,
    )
    return JobRun(result)


def console_logger(debug: bool):
    """Dagster's colored console logger, under its name, config and description (the job stays the
    code location's, and a run made here can be re-executed from the UI with its run config).
    Unless debugging, it prints nothing at ERROR or above: the step and run failures with their
    stack traces, and the steps not executed after them; the command's Error line says it once."""
    from dagster import LoggerDefinition, colored_console_logger

    def console(init_context) -> logging.Logger:
        log = colored_console_logger.logger_fn(init_context)
        if not debug:
            for handler in log.handlers:
                handler.addFilter(lambda record: record.levelno < logging.ERROR)
        return log

    return LoggerDefinition(
        console, config_schema=colored_console_logger.config_schema, description=colored_console_logger.description
    )


class JobRun:
    """A finished run and what its steps reported."""

    def __init__(self, result):
        self.result = result
        self.run_id = result.run_id
        self.success = result.success

    def raise_on_failure(self, what: str) -> None:
        if not self.success:
            raise RunFailed(f"{what} failed (run {self.run_id}): {failure_reason(self.result)}")

    def materialization(self, node: str) -> tuple[str | None, dict]:
        """The partition and metadata values of the last materialization ``node`` reported of its
        own asset, else of any (an op's: the rollback records live_alias, then live_collection)."""
        mats = self.result.asset_materializations_for_node(node)
        mat = ([m for m in mats if m.asset_key.path[-1] == node] or mats[:1])[-1]
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
        """(name, passed, what it found) of each check: the command's heading names the container,
        so the description's own ``container version (gN):`` prefix (for the UI) is left out."""
        evaluations = [e.asset_check_evaluation_data for e in self.result.all_events
                       if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        return [(c.check_name, c.passed, _without_subject(c)) for c in evaluations]


def _without_subject(evaluation) -> str:
    text, metadata = evaluation.description or "", evaluation.metadata
    if {"container", "embedder_version", "generation"} <= set(metadata):
        subject = (f"{metadata['container'].value} {metadata['embedder_version'].value} "
                   f"(g{metadata['generation'].value}): ")
        return text.removeprefix(subject)
    return text


def failure_reason(result) -> str:
    """The first failed step's message: an operator error's own words, without Dagster's wrapping;
    any other error's type and message, and where its traceback is."""
    from ops_pipelines.defs.errors import step_error

    failure = next((e for e in result.all_events if e.is_step_failure), None)
    if failure is None:
        return f"no step failed\n{DEBUG_HINT}"
    data = failure.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    return f"{step_error(failure).strip()}\n{DEBUG_HINT}"


# After an error that is no operator error (a bug, an engine failing): where its traceback is.
DEBUG_HINT = "(not an operator error: ops-pipelines --debug <command> prints its traceback, as does the run in the UI)"


def require_partition(instance, slug: str, hint: str) -> None:
    """Refuse a container that has no ``containers`` partition (the job would fail less clearly),
    unless the knowledge base has it ready: its partition is then added, as the sync sensor does
    (an import killed before it registered the container leaves one so)."""
    from ops_pipelines.defs.partitions import containers_partitions
    from ops_pipelines.kb import ContainerNotFound

    if instance.has_dynamic_partition(containers_partitions.name, slug):
        return
    kb = common.open_kb()
    try:
        ready = any(c.slug == slug for c in kb.list_containers())  # ready ones only
    finally:
        kb.close()
    if not ready:
        raise ContainerNotFound(f"container {slug!r} is not registered: {hint}")
    instance.add_dynamic_partitions(containers_partitions.name, [slug])
