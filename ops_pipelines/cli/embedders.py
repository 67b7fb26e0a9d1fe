"""``ops-pipelines embedders list|sync``: the embedder registry and its Dagster partitions."""

from __future__ import annotations

import click

from ops_pipelines.cli import common


@click.group()
def embedders() -> None:
    """The embedder registry and its Dagster partitions."""


@embedders.command("list")
def embedders_list() -> None:
    """Registered embedder versions (provider, dimension, chunker, model, BM25 if hybrid), and whether
    each has its embedder_versions partition."""
    from ops_pipelines.defs.partitions import embedder_versions_partitions

    registered = set(common.instance().get_dynamic_partitions(embedder_versions_partitions.name))
    for v in common.registry().values():
        if v.base_url:
            model = f"{v.model} at {v.base_url}"
        else:
            model = v.model_path or ("bundled all-MiniLM-L6-v2" if v.provider == "sentence-transformers" else "-")
        if v.hybrid:
            model += f" + {v.sparse.upper()}"
        if v.min_score is not None:
            model += f", least score {v.min_score:g}"
        partition = "partition" if v.name in registered else "NO PARTITION (run: ops-pipelines embedders sync)"
        click.echo(f"{v.name:<20} {v.provider:<22} {v.dimension:>5}-d  {v.chunker:<20} {model}  [{partition}]")


@embedders.command("sync")
def embedders_sync() -> None:
    """Add the embedder_versions partitions the registry has and Dagster lacks."""
    from ops_pipelines.defs.partitions import embedder_versions_partitions
    from ops_pipelines.defs.refresh.sensors import missing_embedder_partitions

    instance = common.instance()
    common.registry()  # a broken registry file is reported before anything is added
    missing = missing_embedder_partitions(instance)
    if missing:
        instance.add_dynamic_partitions(embedder_versions_partitions.name, missing)
    click.echo(f"added {', '.join(missing)}" if missing else "nothing to add: every version has its partition")
