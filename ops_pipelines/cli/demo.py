"""``ops-pipelines demo``: the demo container registered, synced and searched in one go."""

from __future__ import annotations

from pathlib import Path

import click

from ops_pipelines import settings
from ops_pipelines.cli import common
from ops_pipelines.cli.containers import add_container
from ops_pipelines.cli.inspect import format_hits, run_search
from ops_pipelines.cli.sync import format_summary, run_sync

DEMO_QUERY = "how do I roll back after a bad re-embed?"


@click.command()
@click.option("--source", "source_spec", default=None, help="Default: folder:<repo>/docs")
@click.option("--slug", default="docs", show_default=True)
@click.option("--embedder", default=None, help="Default: minilm-l6-v2@2")
@click.option("--query", default=DEMO_QUERY, show_default=True)
def demo(source_spec: str | None, slug: str, embedder: str | None, query: str) -> None:
    """Register the demo container (if new), sync it, search it, say where to look next."""
    from ops_pipelines.kb import ContainerNotFound

    source_spec = source_spec or f"folder:{Path(__file__).resolve().parents[2] / 'docs'}"
    kb = common.open_kb()
    try:
        existing = kb.get_container(slug)
    except ContainerNotFound:
        existing = None
    finally:
        kb.close()
    if existing is None:
        created = add_container(slug, source_spec, embedder)
        click.echo(f"registered container {slug} <- {created.source_kind}:{created.source_location}")
    click.echo(f"syncing {slug} (DAGSTER_HOME={settings.dagster_home()}) ...")
    click.echo(format_summary(run_sync(slug)))
    click.echo(f'\nsearch {slug}: "{query}"')
    for line in format_hits(run_search(slug, query, 3)):
        click.echo(line)
    click.echo(
        "\nnext:\n"
        "  make ui                  open Dagster at http://127.0.0.1:3000 (Assets: sync, refresh, export; Runs)\n"
        f'  .venv/bin/ops-pipelines search {slug} "your question"\n'
        f"  .venv/bin/ops-pipelines refresh {slug}    rebuild from the cache, check, swap (then: generations, rollback)\n"
        "  make demo                again: everything is skipped, nothing is re-embedded"
    )
