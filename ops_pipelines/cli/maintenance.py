"""``ops-pipelines maintenance``: the weekly maintenance_job, now."""

from __future__ import annotations

import click

from ops_pipelines.cli.jobs import run_job

# The steps of maintenance_job that take ``dry_run``, in the order they run; database_maintenance
# (VACUUM or ANALYZE) changes no data and runs either way.
DRY_RUN_STEPS = (
    "orphan_repair", "generation_retention", "embedding_cache_retention", "document_retention", "archive_retention",
)
STEPS = (*DRY_RUN_STEPS, "database_maintenance")


@click.command()
@click.option("--dry-run", is_flag=True, help="Report what each step would remove or write; change nothing.")
def maintenance(dry_run: bool) -> None:
    """Run maintenance_job now: orphan repair, retention of generations, the embedding cache,
    archived documents, backups and exports, then VACUUM (or ANALYZE)."""
    config = {"ops": {step: {"config": {"dry_run": dry_run}} for step in DRY_RUN_STEPS}}
    run = run_job("maintenance_job", config)
    run.raise_on_failure("maintenance")
    click.echo(f"run {run.run_id}{': DRY RUN, nothing changed' if dry_run else ''}")
    for step, metadata in run.materializations(STEPS).items():
        counts = ", ".join(f"{k} {v}" for k, v in metadata.items() if isinstance(v, int | float | str) and k != "dry_run"
                           and not isinstance(v, bool))
        click.echo(f"  {step:<26} {counts}")
