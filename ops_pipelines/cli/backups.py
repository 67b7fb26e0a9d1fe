"""Backups of the whole knowledge base: ``ops-pipelines backup create|list`` and ``restore``
(backup_job, restore_job)."""

from __future__ import annotations

import click

from ops_pipelines.cli.jobs import run_job


@click.group()
def backup() -> None:
    """Backups of the whole knowledge base (backup_job; restore with `ops-pipelines restore`)."""


@backup.command("create")
@click.option("--no-blobs", is_flag=True, help="Leave out the documents' raw bytes.")
def backup_create(no_blobs: bool) -> None:
    """Run backup_job now: one archive of the metadata DB, every live and retained collection and the blobs."""
    run = run_job("backup_job", {"ops": {"kb_backup": {"config": {"include_blobs": not no_blobs}}}})
    run.raise_on_failure("backup")
    _, md = run.materialization("kb_backup")
    click.echo(
        f"run {run.run_id}\n"
        f"  backup      {md['object_key']} in {md['object_store']} ({md['size_bytes']} bytes)\n"
        f"  sha256      {md['sha256']}\n"
        f"  contents    {md['containers']} containers, {md['documents']} documents, {md['chunks']} chunks, "
        f"{md['collections']} collections ({md['points']} points), {md['blobs']} blobs"
    )


@backup.command("list")
def backup_list() -> None:
    """Backups in the object store, newest first."""
    from ops_pipelines.backup import backup_inventory
    from ops_pipelines.objects import open_object_store

    rows = backup_inventory(open_object_store())
    click.echo(text_table(rows, ["key", "created_at", "run_id", "mb"]) if rows else
               "no backups; make one with: ops-pipelines backup create")


def text_table(rows: list[dict], columns: list[str]) -> str:
    """Right-aligned columns under their names, as pandas' ``to_string(index=False)`` prints them
    (what ``backup list`` printed before it stopped importing pandas); floats share the fewest
    decimals, at least one, that show all of them as rounded to two."""
    cells = {c: [str(r[c]) for r in rows] for c in columns}
    for c in columns:
        if all(isinstance(r[c], float) for r in rows):
            text = [f"{r[c]:.2f}" for r in rows]
            cells[c] = [t[:-1] for t in text] if all(t.endswith("0") for t in text) else text
    widths = {c: max(len(c), *(len(v) for v in cells[c])) for c in columns}
    lines = [" ".join(c.rjust(widths[c]) for c in columns)]
    lines += [" ".join(cells[c][i].rjust(widths[c]) for c in columns) for i in range(len(rows))]
    return "\n".join(lines)


@click.command(name="restore")
@click.argument("backup_ref", metavar="[BACKUP]", default="latest")
@click.option("--dry-run", is_flag=True, help="Verify the backup and print what would change; change nothing.")
@click.option("--force", is_flag=True, help="Replace a knowledge base that has containers.")
def restore_command(backup_ref: str, dry_run: bool, force: bool) -> None:
    """Run restore_job: BACKUP is latest (default), a backup run id, an object key, a path or a URL."""
    config = {"backup": backup_ref, "dry_run": dry_run, "force": force}
    run = run_job("restore_job", {"ops": {"restore_knowledge_base": {"config": config}}})
    run.raise_on_failure("restore")
    md = run.observation()
    rows = [r.data for r in md["plan"].records]
    click.echo(f"run {run.run_id}: {'DRY RUN, nothing changed' if dry_run else 'restored'} from {md['backup']}")
    for r in rows:
        click.echo(
            f"  {r['action']:<8} {r['container']:<20} documents {r['documents_now']} -> {r['documents_backup']}, "
            f"chunks {r['chunks_now']} -> {r['chunks_backup']}  {r['live_collection'] or ''}"
        )
    click.echo(f"  {md['collections']} collections, {md['points']} points; {md['drops']} current collections dropped")
    if not dry_run:
        seconds = {k.removesuffix("_seconds"): v for k, v in md.items() if k.endswith("_seconds")}
        click.echo("  seconds     " + ", ".join(f"{k} {v}" for k, v in seconds.items()))
