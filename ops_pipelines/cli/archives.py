"""Container archives: ``ops-pipelines export`` and ``import`` (export_job, import_job) and
``archive verify``."""

from __future__ import annotations

from pathlib import Path

import click

from ops_pipelines.cli import common
from ops_pipelines.cli.jobs import require_partition, run_job


@click.command(name="export")
@click.argument("slug")
@click.option("--format", "fmt", type=click.Choice(["tar", "zip"]), default="tar", show_default=True)
@click.option("--no-vectors", is_flag=True, help="Leave out vectors.npy (an import then re-embeds).")
@click.option("--no-blobs", is_flag=True, help="Leave out the documents' raw bytes.")
@click.option("--url-expiry-hours", default=24, show_default=True, help="Lifetime of the signed URL (S3).")
def export_command(slug: str, fmt: str, no_vectors: bool, no_blobs: bool, url_expiry_hours: int) -> None:
    """Run export_job for one container: an archive in the object store and a URL to it."""
    instance = common.instance()
    require_partition(instance, slug, "list them with ops-pipelines container list")
    config = {
        "format": fmt, "include_vectors": not no_vectors, "include_blobs": not no_blobs,
        "url_expiry_hours": url_expiry_hours,
    }
    run = run_job(
        "export_job", {"ops": {"container_export": {"config": config}}}, partition=slug, container=slug,
        instance=instance,
    )
    run.raise_on_failure(f"export of {slug}")
    _, md = run.materialization("container_export")
    click.echo(
        f"run {run.run_id}\n"
        f"  archive     {md['object_key']} in {md['object_store']} ({md['format']}, {md['size_bytes']} bytes)\n"
        f"  sha256      {md['sha256']}\n"
        f"  contents    {md['documents']} documents, {md['chunks']} chunks, {md.get('vectors', 0)} vectors, "
        f"{md.get('blobs', 0)} blobs ({md['embedder_version']})\n"
        f"  url         {md['url']}"
        + (f"\n  expires     {md['url_expires_at']}" if "url_expires_at" in md else "")
    )


@click.command(name="import")
@click.argument("archive")
@click.option("--slug", default=None, help="Slug to import under (default: the archive's).")
@click.option("--force", is_flag=True, help="Replace an existing container of that slug.")
@click.option("--embedder-version", default=None, help="Target embedder version (default: the archive's).")
def import_command(archive: str, slug: str | None, force: bool, embedder_version: str | None) -> None:
    """Run import_job: verify ARCHIVE (object key, path or URL) and create a container from it."""
    config = {"archive": archive, "slug": slug, "force": force, "embedder_version": embedder_version}
    run = run_job("import_job", {"ops": {"import_container": {"config": config}}}, container=slug or "")
    run.raise_on_failure("import")
    partition, md = run.materialization("import_container")
    vectors = "vectors from the archive" if md["vectors_from_archive"] else f"{md['embedded']} chunks embedded"
    click.echo(
        f"run {run.run_id}\n"
        f"  container   {partition} ({md['embedder_version']}){' replaced' if md['replaced'] else ''}\n"
        f"  contents    {md['documents']} documents, {md['chunks']} chunks, {md['blobs']} blobs; {vectors}\n"
        f"  collection  {md['collection']}, {md['checks_passed']}/6 checks passed"
    )


@click.group()
def archive() -> None:
    """Container archives."""


@archive.command("verify")
@click.argument("source")
def archive_verify(source: str) -> None:
    """Check every member of an archive (path, object key or URL) against its manifest."""
    import tempfile
    import urllib.parse

    from ops_pipelines.archives import ArchiveError, check_registered_dimension, fetch_archive, read_archive
    from ops_pipelines.objects import open_object_store

    local = urllib.parse.urlsplit(source).scheme in ("http", "https", "file") or Path(source).is_file()
    with tempfile.TemporaryDirectory(prefix="ops-verify-") as tmp:
        try:
            # The object store is only opened for an object key.
            verified = read_archive(fetch_archive(source, None if local else open_object_store(), Path(tmp)))
            registered = check_registered_dimension(verified.manifest)
        except ArchiveError as exc:  # the verdict, not a failure to reach the archive
            raise click.ClickException(f"INVALID: {exc}") from exc
    m = verified.manifest
    counts = ", ".join(f"{n} {k}" for k, n in m["counts"].items())
    unknown = "" if registered else " (not in this embedder registry: import it with --embedder-version)"
    click.echo(
        f"OK {verified.format} archive, format version {m['format_version']}, created {m['created_at']}\n"
        f"  container   {m['container']['slug']} ({m['container']['id']})\n"
        f"  embedder    {m['embedder']['version']}, {m['embedder']['dimension']}-d{unknown}\n"
        f"  contents    {counts}\n"
        f"  members     {verified.member_count}, every size and sha256 as in the manifest"
        + (", each blob's as its name" if "blobs" in m else "")  # counted, not listed, from version 2
    )
