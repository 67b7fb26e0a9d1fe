"""``ops-pipelines container add|list``: knowledge-base containers and their Dagster partitions."""

from __future__ import annotations

import click

from ops_pipelines.cli import common
from ops_pipelines.errors import OperatorError


@click.group()
def container() -> None:
    """Register and list knowledge-base containers."""


@container.command("add")
@click.option("--slug", required=True, help="Short name, e.g. docs; the live alias is kb_<slug>.")
@click.option(
    "--source",
    "source_spec",
    required=True,
    help="folder:PATH, jsonl:PATH, redmine:URL?projects=A,B[&wiki=1][&key_env=VAR] or http:URL [URL ...] "
    "(pages, or sitemaps ending in .xml)",
)
@click.option("--embedder", default=None, help="Embedder version (default minilm-l6-v2@1).")
def container_add(slug: str, source_spec: str, embedder: str | None) -> None:
    """Register a container and its Dagster partition."""
    created = add_container(slug, source_spec, embedder)
    click.echo(f"container {created.slug} ({created.id}) <- {created.source_kind}:{created.source_location}")
    click.echo(f"embedder {created.embedder_version}; sync it with: ops-pipelines sync {created.slug}")


def add_container(slug: str, source_spec: str, embedder: str | None):
    from ops_pipelines.defs.partitions import containers_partitions
    from ops_pipelines.embedders import DEFAULT_VERSION, get_version
    from ops_pipelines.sources import open_source, parse_source_spec
    from ops_pipelines.sources.redmine import ADMIN_KEY_WARNING

    try:
        kind, location = parse_source_spec(source_spec)
        source = open_source(kind, location)
        try:
            source.check()  # a Redmine's key, projects, and wiki modules with wiki=1
        finally:
            source.close()
        if getattr(source, "admin_key", False):
            click.echo(f"WARNING: {ADMIN_KEY_WARNING.format(env=source.key_env)}", err=True)
        version = get_version(embedder or DEFAULT_VERSION)
        kb = common.open_kb()
        try:
            created = kb.add_container(slug, kind, location, version.name)
        finally:
            kb.close()
    # A bad source spec or slug is a plain ValueError of its parser; the operator errors (a source
    # that cannot be read, an unknown embedder version, a slug taken) are the command group's.
    except ValueError as exc:
        if isinstance(exc, OperatorError):
            raise
        raise click.ClickException(str(exc)) from exc
    common.instance().add_dynamic_partitions(containers_partitions.name, [created.slug])
    return created


@container.command("list")
def container_list() -> None:
    """Containers with their source, embedder version and document counts."""
    kb = common.open_kb()
    try:
        rows = [(c, kb.count_documents(c.id)) for c in kb.list_containers()]
    finally:
        kb.close()
    if not rows:
        click.echo("no containers; add one with: ops-pipelines container add --slug S --source folder:PATH")
        return
    for c, counts in rows:
        synced = c.last_synced_at.isoformat(timespec="seconds") if c.last_synced_at else "never"
        click.echo(
            f"{c.slug:<20} {c.embedder_version:<16} active={counts['active']:<6} "
            f"archived={counts['archived']:<6} synced={synced}  {c.source_kind}:{c.source_location}"
        )
