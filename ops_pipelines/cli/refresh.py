"""``ops-pipelines refresh`` and ``rollback``: refresh_job and rollback_job, in this process."""

from __future__ import annotations

import click

from ops_pipelines.cli import common
from ops_pipelines.cli.jobs import run_job


@click.command()
@click.argument("slug")
@click.option("--embedder-version", default=None, help="Target version (default: the container's current one).")
@click.option("--mode", type=click.Choice(["shadow", "in_place"]), default="shadow", show_default=True)
@click.option("--retention", default=2, show_default=True, help="Generations kept, the live one included.")
@click.option("--recompute", is_flag=True, help="Re-embed every chunk even if the cache has it.")
def refresh(slug: str, embedder_version: str | None, mode: str, retention: int, recompute: bool) -> None:
    """Run refresh_job for one container now: embed, build, check, swap."""
    click.echo("\n".join(format_refresh(run_refresh(slug, embedder_version, mode, retention, recompute))))


def run_refresh(
    slug: str, embedder_version: str | None = None, mode: str = "shadow", retention: int = 2, recompute: bool = False
) -> dict:
    from ops_pipelines.defs.partitions import containers_partitions, embedder_versions_partitions, refresh_partition_key
    from ops_pipelines.embedders import get_version

    kb = common.open_kb()
    try:
        container = kb.get_container(slug)
    finally:
        kb.close()
    version = get_version(embedder_version or container.embedder_version).name
    instance = common.instance()
    for partitions, key in ((containers_partitions, container.slug), (embedder_versions_partitions, version)):
        if not instance.has_dynamic_partition(partitions.name, key):
            instance.add_dynamic_partitions(partitions.name, [key])
    run_config = {
        "ops": {
            "version_embeddings": {"config": {"recompute": recompute}},
            "shadow_collection": {"config": {"mode": mode}},
            "live_alias": {"config": {"retention": retention}},
        }
    }
    run = run_job(
        "refresh_job", run_config, partition=refresh_partition_key(container.slug, version), container=container.slug,
        instance=instance,
    )
    summary = {"run_id": run.run_id, "success": run.success, "checks": run.checks()}
    summary |= run.materializations(("version_embeddings", "shadow_collection", "live_alias"))
    if not run.success:
        click.echo("\n".join(format_refresh(summary)))  # what the run did before it failed
        run.raise_on_failure(f"refresh of {slug}")
    return summary


def format_refresh(summary: dict) -> list[str]:
    lines = [f"run {summary['run_id']}"]
    if emb := summary.get("version_embeddings"):
        lines.append(
            f"  embeddings  {emb['computed']} computed, {emb['cached']} from cache "
            f"({emb['embedder_version']}, {emb['dimension']}-d)"
        )
    if build := summary.get("shadow_collection"):
        lines.append(
            f"  build       {build['mode']}: {build['collection']} (generation {build['generation']}"
            f"{', resumed' if build['resumed'] else ''}): {build['upserted']} upserted, "
            f"{build['deleted']} deleted, {build['points']} points"
        )
    for name, passed, description in summary["checks"]:
        lines.append(f"  check       {'pass' if passed else 'FAIL'}  {name}: {description}")
    if swap := summary.get("live_alias"):
        dropped = ", ".join(swap["dropped"]) or "none"
        lines.append(
            f"  swap        {swap['alias']} -> {swap['collection']} (was {swap['previous_collection'] or 'none'}); "
            f"dropped: {dropped}"
        )
    elif summary.get("shadow_collection"):
        lines.append("  swap        NOT DONE: the live alias still serves the previous generation")
    return lines


@click.command(name="rollback")
@click.argument("slug")
@click.option("--to", "to_generation", type=int, default=None, help="Generation number (default: newest retired).")
def rollback_command(slug: str, to_generation: int | None) -> None:
    """Point a container's live alias back at a retained generation (rollback_job)."""
    config = {"container": slug, "to_generation": to_generation}
    run = run_job("rollback_job", {"ops": {"rollback_alias": {"config": config}}}, container=slug)
    run.raise_on_failure(f"rollback of {slug}")
    _, md = run.materialization("rollback_alias")
    click.echo(
        f"run {run.run_id}\n  {md['alias']} -> {md['collection']} (generation {md['generation']}, "
        f"{md['embedder_version']}); was {md['previous_collection'] or 'none'}"
    )
