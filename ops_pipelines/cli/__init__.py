"""Operator commands: ``ops-pipelines container|sync|search|eval|refresh|export|backup|restore|metrics|demo``
and ``trigger|backfill``, one module per area.

They use the same settings (environment variables) as the Dagster code location, and launch
jobs on the Dagster instance in ``DAGSTER_HOME``, so every run they make shows in the UI;
``trigger`` and ``backfill`` launch through the webserver at ``DAGSTER_URL`` instead (GraphQL),
so their runs go through the instance's run queue and daemon.

Each command imports what it uses when it runs: a command that runs no job starts without
Dagster, pandas or the models, and a job-backed command loads only its capability's Definitions
(``ops_pipelines.cli.jobs``). The modules here import nothing heavier than click at the top.
"""

from __future__ import annotations

import traceback

import click

from ops_pipelines.cli import (
    archives,
    backups,
    containers,
    demo,
    embedders,
    inspect,
    maintenance,
    metrics,
    quality,
    refresh,
    remote,
    sources,
    sync,
    vectors,
)
from ops_pipelines.cli.containers import add_container
from ops_pipelines.cli.demo import DEMO_QUERY
from ops_pipelines.cli.inspect import format_hits, run_search
from ops_pipelines.cli.jobs import failure_reason
from ops_pipelines.cli.refresh import format_refresh, run_refresh
from ops_pipelines.cli.sync import format_summary, run_sync
from ops_pipelines.errors import OperatorError


class _Commands(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OperatorError as exc:  # one message and what to do, the traceback only with --debug
            if ctx.params.get("debug"):
                click.echo(traceback.format_exc(), err=True, nl=False)
            raise click.ClickException(str(exc)) from exc


@click.group(
    cls=_Commands,
    commands=[
        containers.container,
        sources.source,
        embedders.embedders,
        sync.sync,
        refresh.refresh,
        refresh.rollback_command,
        inspect.generations,
        inspect.search,
        inspect.health,
        quality.eval_command,
        archives.export_command,
        archives.import_command,
        archives.archive,
        backups.backup,
        backups.restore_command,
        maintenance.maintenance,
        metrics.metrics,
        vectors.vectors,
        remote.trigger,
        remote.backfill,
        demo.demo,
    ]
)
@click.option(
    "--debug",
    is_flag=True,
    help="Print everything: Dagster's debug-level logs, and the traceback of a failure (by default a "
    "failure is one Error line saying what happened and what to do).",
)
def main(debug: bool) -> None:
    """Day-2 operations of RAG knowledge bases, on Dagster."""


__all__ = [
    "DEMO_QUERY",
    "add_container",
    "failure_reason",
    "format_hits",
    "format_refresh",
    "format_summary",
    "main",
    "run_refresh",
    "run_search",
    "run_sync",
]
