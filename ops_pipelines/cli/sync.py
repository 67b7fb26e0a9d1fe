"""``ops-pipelines sync``: sync_job for one container, in this process."""

from __future__ import annotations

import click

from ops_pipelines.cli import common
from ops_pipelines.cli.jobs import require_partition, run_job

SYNC_ASSETS = ("source_documents", "chunks", "embeddings", "live_collection")


@click.command()
@click.argument("slug")
@click.option("--allow-empty-source", is_flag=True, help="Archive everything if the source is empty.")
@click.option("--max-archive-fraction", type=float, default=0.5, show_default=True)
@click.option(
    "--max-document-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="Skip records larger than this (default: OPS_SOURCE_MAX_DOCUMENT_BYTES, 5 MiB).",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "incremental", "full"]),
    default="auto",
    show_default=True,
    help="Remote sources: incremental (changes only, archives nothing), full (reconcile, archive what "
    "vanished), auto (full when due).",
)
def sync(slug: str, allow_empty_source: bool, max_archive_fraction: float, max_document_bytes: int | None,
         mode: str) -> None:
    """Run sync_job for one container now (in this process) and print what it did."""
    summary = run_sync(slug, allow_empty_source, max_archive_fraction, mode, max_document_bytes)
    click.echo(format_summary(summary))


def run_sync(slug: str, allow_empty_source: bool = False, max_archive_fraction: float = 0.5, mode: str = "auto",
             max_document_bytes: int | None = None) -> dict:
    instance = common.instance()
    require_partition(instance, slug, f"add it with ops-pipelines container add --slug {slug} --source ...")
    config = {"allow_empty_source": allow_empty_source, "max_archive_fraction": max_archive_fraction, "mode": mode,
              "max_document_bytes": max_document_bytes}
    run = run_job(
        "sync_job", {"ops": {"source_documents": {"config": config}}}, partition=slug, container=slug, instance=instance
    )
    run.raise_on_failure(f"sync of {slug}")
    return {"run_id": run.run_id} | run.materializations(SYNC_ASSETS)


def format_summary(summary: dict) -> str:
    docs, chunks, emb, live = (summary[k] for k in SYNC_ASSETS)
    counts = ", ".join(f"{k} {docs[k]}" for k in ("inserted", "updated", "skipped", "archived", "unarchived", "failed"))
    requests = f", {docs['source_requests']} requests" if "source_requests" in docs else ""
    lines = [
        f"run {summary['run_id']}",
        f"  documents   {counts} ({docs['mode']} read{requests})",
        f"  chunks      {chunks['documents_chunked']} documents re-chunked, {chunks['active_chunks']} active chunks",
        f"  embeddings  {emb['computed']} computed, {emb['cached']} from cache ({emb['embedder_version']}, {emb['dimension']}-d)",
        (
            f"  collection  {live['collection']} via alias {live['alias']}: {live['upserted']} upserted, "
            f"{live['deleted']} deleted, {live['points']} points"
        ),
    ]
    lines[2:2] = _not_read(docs, summary["run_id"])
    if "archive_withheld" in docs:
        lines.append(f"  WARNING     {docs['archive_withheld']}")
    return "\n".join(lines)


SHOWN_FAILURES = 10


def _not_read(docs: dict, run_id: str) -> list[str]:
    """One line per record the sync skipped (a link, a FIFO, a file too large, invalid UTF-8...)."""
    if "failures" not in docs:
        return []
    rows = [r.data for r in docs["failures"].records]
    lines = [f"  not read    {row['source_key']}: {row['reason']}" for row in rows[:SHOWN_FAILURES]]
    if docs["failed"] > SHOWN_FAILURES:
        lines.append(
            f"  not read    ... and {docs['failed'] - SHOWN_FAILURES} more: see the failures table of "
            f"source_documents (up to 100) and the log of run {run_id}"
        )
    return lines
