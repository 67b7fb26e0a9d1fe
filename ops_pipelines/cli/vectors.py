"""``ops-pipelines vectors migrate``: a vector folder of qdrant-client's local mode into Qdrant Edge."""

from __future__ import annotations

import click

from ops_pipelines import settings
from ops_pipelines.cli.common import open_kb


@click.group()
def vectors() -> None:
    """The embedded vector engine's folder (OPS_QDRANT_PATH)."""


@vectors.command("migrate")
@click.option("--path", default=None, help="The vector folder (default: OPS_QDRANT_PATH).")
@click.option("--remove-old", is_flag=True, help="Delete the local-mode files once the copy is verified.")
def migrate(path: str | None, remove_old: bool) -> None:
    """Copy a folder written by qdrant-client's local mode (ops-pipelines before Qdrant Edge) into
    Qdrant Edge shards in the same folder, every point compared by id and a sample by vector and
    payload; the old files stay until --remove-old."""
    from ops_pipelines.vectors.migrate import migrate_local_mode

    root = path or settings.qdrant_path()
    report = migrate_local_mode(root, remove_old=remove_old)
    for c in report.collections:
        click.echo(f"  {c.name:<50} {c.points:>9} points  {c.dimension:>5}-d  {c.sampled} compared")
    if report.collections or not report.removed_old:
        click.echo(f"migrated {len(report.collections)} collections into Qdrant Edge in {root}")
        for line in _aliases_against_records(report.aliases):
            click.echo(line)
    if report.removed_old:
        click.echo("the local-mode files (meta.json, collection/) are removed")
    else:
        click.echo(
            "the local-mode files (meta.json, collection/) are kept beside the shards: once satisfied, "
            f"run again with --remove-old, or delete them from {root}"
        )


def _aliases_against_records(aliases: dict[str, str]) -> list[str]:
    """Each old alias beside the live generation the metadata DB records: embedded, the record is
    the alias, so a disagreement is reported (the record wins)."""
    kb = open_kb()
    try:
        lines = []
        for container in kb.list_containers():
            alias = f"kb_{container.slug}"
            live = kb.live_generation(container.id)
            recorded = live.collection if live else None
            old = aliases.get(alias)
            verdict = "agrees" if old == recorded else f"WAS {old or 'absent'}: the recorded live generation now serves"
            lines.append(f"  alias {alias}: {recorded or 'nothing live'} ({verdict})")
        return lines
    finally:
        kb.close()
