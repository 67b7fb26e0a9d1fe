"""Looking at what is there: ``ops-pipelines search``, ``generations`` and ``health``."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

import click

from ops_pipelines import settings
from ops_pipelines.cli import common
from ops_pipelines.errors import OperatorError


class InvalidFilter(OperatorError, ValueError):
    pass


@click.command()
@click.argument("slug")
@click.argument("query")
@click.option("--limit", default=5, show_default=True)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="NAME=VALUE",
    help="Only points whose source field NAME (payload fields.NAME) is VALUE, e.g. status=New (repeatable: "
    "all must hold).",
)
def search(slug: str, query: str, limit: int, filters: tuple[str, ...]) -> None:
    """Search a container through its live alias."""
    where = parse_filters(filters, container_fields(slug)) if filters else None
    for line in format_hits(run_search(slug, query, limit, where)):
        click.echo(line)


def container_fields(slug: str) -> tuple[str, ...]:
    """The fields the documents of container ``slug`` carry."""
    from ops_pipelines.sources import payload_field_names

    kb = common.open_kb()
    try:
        container = kb.get_container(slug)
    finally:
        kb.close()
    return payload_field_names(container.source_kind, container.declared_fields)


def parse_filters(filters: Iterable[str], known: tuple[str, ...]) -> dict[str, str]:
    """``NAME=VALUE`` filters -> the payload match ``{"fields.NAME": VALUE}``; ``InvalidFilter``
    for one that is not of that form, or names a field the documents do not carry (``known``):
    a typo would otherwise match nothing, silently."""
    where: dict[str, str] = {}
    for text in filters:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidFilter(f"invalid --filter {text!r}: write NAME=VALUE, e.g. --filter status=New")
        if name not in known:
            carried = f"they carry {', '.join(known)}" if known else "they carry no fields"
            raise InvalidFilter(
                f"invalid --filter {text!r}: the container's documents have no field {name!r}; {carried}"
            )
        if where.get(f"fields.{name}", value) != value:
            raise InvalidFilter(f"invalid --filter {text!r}: {name} is filtered on twice, and a point has one {name}")
        where[f"fields.{name}"] = value
    return where


def run_search(slug: str, query: str, limit: int, where: dict[str, str] | None = None):
    """The search's ``Searched``: its hits, and the least score that kept them."""
    from ops_pipelines.search import search_live

    kb = common.open_kb()
    try:
        with common.open_vectors() as store:
            return search_live(kb, store, slug, query, limit, where)
    finally:
        kb.close()


def format_hits(searched) -> list[str]:
    lines = []
    for rank, hit in enumerate(searched.hits, start=1):
        snippet = textwrap.shorten(" ".join(hit.payload.get("text", "").split()), 110)
        lines.append(f"{rank}. {hit.score:.3f}  {hit.payload.get('title')}  [{hit.payload.get('source_key')}]")
        lines.append(f"     {snippet}")
    if not lines and searched.best_dropped is not None:
        return [f"no match: the best hit scores {searched.best_dropped:.3f}, below the live generation's least score "
                f"{searched.min_score:.3f}"]
    return lines or ["no hits"]


@click.command()
@click.argument("slug")
def generations(slug: str) -> None:
    """A container's collection generations: state, embedder version, points, which one is live."""
    from ops_pipelines.vectors import alias_name
    from ops_pipelines.vectors.serving import serving_collection

    kb = common.open_kb()
    try:
        container = kb.get_container(slug)
        rows = kb.generations(container.id)
        if not rows:
            click.echo(f"{slug} has no generations yet: sync it with ops-pipelines sync {slug}")
            return
        with common.open_vectors() as store:
            serving = serving_collection(kb, store, container)
            points = {g.number: store.count(g.collection) if store.collection_dimension(g.collection) else None for g in rows}
    finally:
        kb.close()
    for g in rows:
        count = "-" if points[g.number] is None else points[g.number]
        marker = f"  <- {alias_name(container.slug)}" if g.collection == serving else ""
        click.echo(f"g{g.number:<3} {g.state:<9} {g.embedder_version:<16} {count!s:>7} points  {g.collection}{marker}")


@click.command()
def health() -> None:
    """Probe the metadata DB, Qdrant, the object store, the embedders and the Dagster instance; exit 1 on a failure.
    Containers not synced within OPS_SYNC_MAX_AGE_HOURS are a warning (exit 0)."""
    from ops_pipelines.health import check_all, probe_freshness
    from ops_pipelines.objects import open_object_store

    results = check_all(settings.kb_url(), common.open_vectors, open_object_store, common.instance())
    for r in results:
        click.echo(f"{r.component:<17} {'ok' if r.ok else 'FAIL':<5} {r.latency_ms:>8.1f} ms  {r.detail}")
    fresh = probe_freshness(settings.kb_url())
    click.echo(f"{fresh.component:<17} {'ok' if fresh.ok else 'warn':<5} {fresh.latency_ms:>8.1f} ms  {fresh.detail}")
    failed = [r.component for r in results if not r.ok]
    if failed:
        raise click.ClickException(f"unhealthy: {', '.join(failed)}")
