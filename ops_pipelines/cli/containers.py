"""``ops-pipelines container add|list|remove``: knowledge-base containers and their Dagster partitions."""

from __future__ import annotations

import click

from ops_pipelines.cli import common
from ops_pipelines.errors import OperatorError


@click.group()
def container() -> None:
    """Register, list and remove knowledge-base containers."""


@container.command("add")
@click.option("--slug", required=True, help="Short name, e.g. docs; the live alias is kb_<slug>.")
@click.option(
    "--source",
    "source_spec",
    required=True,
    help="folder:PATH, jsonl:PATH, redmine:URL?projects=A,B[&wiki=1][&key_env=VAR] or http:URL [URL ...] "
    "(pages, or sitemaps ending in .xml)",
)
@click.option("--embedder", default=None, help="Embedder version (default minilm-l6-v2@2).")
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME",
    help="jsonl sources: a record key whose value every point of the record carries, as fields.NAME, to filter "
    "searches on (repeatable).",
)
def container_add(slug: str, source_spec: str, embedder: str | None, fields: tuple[str, ...]) -> None:
    """Register a container and its Dagster partition."""
    from ops_pipelines.sources import payload_field_names

    created = add_container(slug, source_spec, embedder, fields)
    click.echo(f"container {created.slug} ({created.id}) <- {created.source_kind}:{created.source_location}")
    carried = payload_field_names(created.source_kind, created.declared_fields)
    if carried:
        click.echo(f"fields {', '.join(carried)}; filter searches with: --filter NAME=VALUE")
    click.echo(f"embedder {created.embedder_version}; sync it with: ops-pipelines sync {created.slug}")


def add_container(slug: str, source_spec: str, embedder: str | None, fields: tuple[str, ...] = ()):
    from ops_pipelines.defs.partitions import containers_partitions
    from ops_pipelines.embedders import DEFAULT_VERSION, get_version
    from ops_pipelines.sources import open_source, parse_source_spec
    from ops_pipelines.sources.redmine import ADMIN_KEY_WARNING

    try:
        kind, location = parse_source_spec(source_spec)
        source = open_source(kind, location, fields=fields)
        try:
            source.check()  # a Redmine's key, projects, and wiki modules with wiki=1
        finally:
            source.close()
        if getattr(source, "admin_key", False):
            click.echo(f"WARNING: {ADMIN_KEY_WARNING.format(env=source.key_env)}", err=True)
        version = get_version(embedder or DEFAULT_VERSION)
        kb = common.open_kb()
        try:
            created = kb.add_container(slug, kind, location, version.name, declared_fields=source.declared_fields)
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
    """Containers with their source, embedder version and document counts; those an import is
    writing or has replaced with what to do about them."""
    kb = common.open_kb()
    try:
        rows = [(c, kb.count_documents(c.id)) for c in kb.list_containers(every_state=True)]
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
            f"{' fields=' + ','.join(c.declared_fields) if c.declared_fields else ''}{_state(c)}"
        )


def _state(c) -> str:
    from ops_pipelines.kb import IMPORTING, PARKED

    remove = f"ops-pipelines container remove {c.slug}"
    if c.state == IMPORTING:
        return (
            f"  [importing as {c.import_slug}: unless that import is still running, re-run the import "
            f"(it removes this first) or {remove}]"
        )
    if c.state == PARKED:
        return f"  [parked: replaced by an import as {c.import_slug}, not removed yet: {remove}]"
    return ""


@container.command("remove")
@click.argument("slug")
@click.option("--force", is_flag=True, help="Remove it even if it serves searches.")
def container_remove(slug: str, force: bool) -> None:
    """Remove a container: its collections, its records (documents, chunks, generations, its
    archive's vectors) and its Dagster partition. Refuses one that serves searches unless --force;
    never drops a collection another container's records name."""
    from ops_pipelines.containers import remove_container
    from ops_pipelines.kb import holder_for

    kb = common.open_kb()
    try:  # a refusal (serving, not found, its lease held) is an operator error: the group prints it
        with common.open_vectors() as store:
            removal = remove_container(kb, store, slug, holder_for(None), force=force)
    finally:
        kb.close()
    from ops_pipelines.defs.partitions import containers_partitions

    instance, removed = common.instance(), removal.container
    if instance.has_dynamic_partition(containers_partitions.name, removed.slug):
        instance.delete_dynamic_partition(containers_partitions.name, removed.slug)
    dropped = f": {', '.join(removal.dropped)}" if removal.dropped else ""
    click.echo(
        f"removed container {removed.slug} ({removed.state}): its records, partition and "
        f"{len(removal.dropped)} collection(s){dropped}"
    )
    for name, why in removal.kept.items():
        click.echo(f"  kept {name}: {why}")
