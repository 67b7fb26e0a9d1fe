"""Operator commands: ``ops-pipelines container|sync|search|refresh|export|backup|restore|demo``
and ``trigger|backfill``.

They use the same settings (environment variables) as the Dagster code location, and launch
jobs on the Dagster instance in ``DAGSTER_HOME``, so every run they make shows in the UI;
``trigger`` and ``backfill`` launch through the webserver at ``DAGSTER_URL`` instead (GraphQL),
so their runs go through the instance's run queue and daemon.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import click

from ops_pipelines import settings

DEMO_QUERY = "how do I roll back after a bad re-embed?"


def _instance():
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home())
    from dagster import DagsterInstance

    return DagsterInstance.get()


def _kb():
    from ops_pipelines.kb import KnowledgeBase

    return KnowledgeBase(settings.kb_url())


def _vector_store():
    from ops_pipelines.vectors import open_vector_store

    url = settings.qdrant_url()
    return open_vector_store(url=url, api_key=settings.qdrant_api_key(), path=None if url else settings.qdrant_path())


@click.group()
def main() -> None:
    """Day-2 operations of RAG knowledge bases, on Dagster."""


@main.group()
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
    from ops_pipelines.embedders import DEFAULT_VERSION, UnknownEmbedderVersion, get_version
    from ops_pipelines.kb import ContainerExists
    from ops_pipelines.sources import SourceUnavailable, open_source, parse_source_spec

    try:
        kind, location = parse_source_spec(source_spec)
        source = open_source(kind, location)
        try:
            source.check()
        finally:
            source.close()
        version = get_version(embedder or DEFAULT_VERSION)
        kb = _kb()
        try:
            created = kb.add_container(slug, kind, location, version.name)
        finally:
            kb.close()
    # ValueError covers bad specs and slugs, and a broken registry file (InvalidRegistry).
    except (ValueError, SourceUnavailable, UnknownEmbedderVersion, ContainerExists) as exc:
        raise click.ClickException(str(exc)) from exc
    _instance().add_dynamic_partitions(containers_partitions.name, [created.slug])
    return created


@container.command("list")
def container_list() -> None:
    """Containers with their source, embedder version and document counts."""
    kb = _kb()
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


@main.group()
def source() -> None:
    """Remote sources: cursors, full passes and circuit breakers."""


@source.command("status")
@click.argument("slug", required=False)
def source_status(slug: str | None) -> None:
    """Each container's breaker state, consecutive failures, last full pass and cursor."""
    from ops_pipelines.ingest import BreakerPolicy, breaker_status
    from ops_pipelines.kb import ContainerNotFound
    from ops_pipelines.kb.clock import utcnow

    policy = BreakerPolicy.from_env()
    kb = _kb()
    try:
        containers = [kb.get_container(slug)] if slug else kb.list_containers()
        rows = [(c, kb.source_state(c.id)) for c in containers]
    except ContainerNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        kb.close()
    for c, state in rows:
        status = breaker_status(state, policy, utcnow())
        full = state.full_synced_at.isoformat(timespec="seconds") if state.full_synced_at else "never"
        line = f"{c.slug:<20} breaker={status:<9} failures={state.failures:<3} full_pass={full}"
        if state.opened_until and status == "open":
            line += f"  open_until={state.opened_until.isoformat(timespec='seconds')}"
        cursor = {k: v for k, v in state.state.items() if k != "validators"}
        if cursor:
            line += f"  cursor={json.dumps(cursor, sort_keys=True)}"
        click.echo(line)
        if state.last_error:
            click.echo(f"{'':<20} last error: {state.last_error}")


@source.command("reset")
@click.argument("slug")
def source_reset(slug: str) -> None:
    """Close a container's circuit breaker now (after fixing its source)."""
    from ops_pipelines.kb import ContainerNotFound

    kb = _kb()
    try:
        container = kb.get_container(slug)
        kb.record_source_success(container.id)
    except ContainerNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        kb.close()
    click.echo(f"{slug}: circuit breaker closed; the next sync reads the source (ops-pipelines sync {slug})")


@main.group()
def embedders() -> None:
    """The embedder registry and its Dagster partitions."""


@embedders.command("list")
def embedders_list() -> None:
    """Registered embedder versions, and whether each has its embedder_versions partition."""
    from ops_pipelines.defs.partitions import embedder_versions_partitions

    registered = set(_instance().get_dynamic_partitions(embedder_versions_partitions.name))
    for v in _registry().values():
        model = v.model_path or ("bundled all-MiniLM-L6-v2" if v.provider == "sentence-transformers" else "-")
        partition = "partition" if v.name in registered else "NO PARTITION (run: ops-pipelines embedders sync)"
        click.echo(f"{v.name:<20} {v.provider:<22} {v.dimension:>5}-d  {model}  [{partition}]")


@embedders.command("sync")
def embedders_sync() -> None:
    """Add the embedder_versions partitions the registry has and Dagster lacks."""
    from ops_pipelines.defs.partitions import embedder_versions_partitions
    from ops_pipelines.defs.refresh.sensors import missing_embedder_partitions

    instance = _instance()
    _registry()  # a broken registry file is reported before anything is added
    missing = missing_embedder_partitions(instance)
    if missing:
        instance.add_dynamic_partitions(embedder_versions_partitions.name, missing)
    click.echo(f"added {', '.join(missing)}" if missing else "nothing to add: every version has its partition")


def _registry():
    from ops_pipelines.embedders import InvalidRegistry, versions

    try:
        return versions()
    except InvalidRegistry as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("slug")
@click.option("--allow-empty-source", is_flag=True, help="Archive everything if the source is empty.")
@click.option("--max-archive-fraction", type=float, default=0.5, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["auto", "incremental", "full"]),
    default="auto",
    show_default=True,
    help="Remote sources: incremental (changes only, archives nothing), full (reconcile, archive what "
    "vanished), auto (full when due).",
)
def sync(slug: str, allow_empty_source: bool, max_archive_fraction: float, mode: str) -> None:
    """Run sync_job for one container now (in this process) and print what it did."""
    summary = run_sync(slug, allow_empty_source, max_archive_fraction, mode)
    click.echo(format_summary(summary))


def run_sync(slug: str, allow_empty_source: bool = False, max_archive_fraction: float = 0.5, mode: str = "auto") -> dict:
    from ops_pipelines.defs.partitions import containers_partitions

    instance = _instance()
    if not instance.has_dynamic_partition(containers_partitions.name, slug):
        raise click.ClickException(
            f"container {slug!r} is not registered: add it with ops-pipelines container add --slug {slug} --source ..."
        )
    config = {"allow_empty_source": allow_empty_source, "max_archive_fraction": max_archive_fraction, "mode": mode}
    result = _execute(instance, "sync_job", slug, {"ops": {"source_documents": {"config": config}}}, slug)
    _raise_on_failure(result, f"sync of {slug}")
    return {"run_id": result.run_id} | _materializations(result, ("source_documents", "chunks", "embeddings", "live_collection"))


def _execute(instance, job_name: str, partition_key, run_config: dict, container: str):
    """Run a job of the code location in this process, on the instance (so the UI shows it)."""
    from ops_pipelines.definitions import build_definitions

    # Built now, not at import: resources follow this process's current settings.
    return build_definitions().resolve_job_def(job_name).execute_in_process(
        instance=instance,
        partition_key=partition_key,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}, **run_config},
        tags={"ops/container": container},
        raise_on_error=False,
    )


def _raise_on_failure(result, what: str) -> None:
    if result.success:
        return
    raise click.ClickException(f"{what} failed (run {result.run_id}): {failure_reason(result)}")


def failure_reason(result) -> str:
    """The first failed step's message: an operator error's own words, without Dagster's wrapping."""
    failure = next((e for e in result.all_events if e.is_step_failure), None)
    if failure is None:
        return "see the run in the UI"
    data = failure.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip()


def _materializations(result, assets) -> dict:
    found = {}
    for name in assets:
        for mat in result.asset_materializations_for_node(name):
            found[name] = {k: v.value for k, v in mat.metadata.items()}
    return found


def format_summary(summary: dict) -> str:
    docs, chunks, emb, live = (
        summary[k] for k in ("source_documents", "chunks", "embeddings", "live_collection")
    )
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
    if "archive_withheld" in docs:
        lines.append(f"  WARNING     {docs['archive_withheld']}")
    return "\n".join(lines)


@main.command()
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
    from ops_pipelines.kb import ContainerNotFound

    kb = _kb()
    try:
        container = kb.get_container(slug)
    except ContainerNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        kb.close()
    version = embedder_version or container.embedder_version
    if version not in _registry():
        raise click.ClickException(f"unknown embedder version {version!r}; known: {', '.join(sorted(_registry()))}")
    instance = _instance()
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
    result = _execute(instance, "refresh_job", refresh_partition_key(container.slug, version), run_config, container.slug)
    summary = {"run_id": result.run_id, "success": result.success, "checks": _check_results(result)}
    summary |= _materializations(result, ("version_embeddings", "shadow_collection", "live_alias"))
    if not result.success:
        lines = format_refresh(summary)
        raise click.ClickException("\n".join([*lines, f"refresh of {slug} failed: {failure_reason(result)}"]))
    return summary


def _check_results(result) -> list[tuple[str, bool, str]]:
    return [
        (e.asset_check_evaluation_data.check_name, e.asset_check_evaluation_data.passed,
         e.asset_check_evaluation_data.description or "")
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]


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


@main.command(name="rollback")
@click.argument("slug")
@click.option("--to", "to_generation", type=int, default=None, help="Generation number (default: newest retired).")
def rollback_command(slug: str, to_generation: int | None) -> None:
    """Point a container's live alias back at a retained generation (rollback_job)."""
    result = _execute(
        _instance(), "rollback_job", None,
        {"ops": {"rollback_alias": {"config": {"container": slug, "to_generation": to_generation}}}}, slug,
    )
    _raise_on_failure(result, f"rollback of {slug}")
    (mat,) = result.asset_materializations_for_node("rollback_alias")
    md = {k: v.value for k, v in mat.metadata.items()}
    click.echo(
        f"run {result.run_id}\n  {md['alias']} -> {md['collection']} (generation {md['generation']}, "
        f"{md['embedder_version']}); was {md['previous_collection'] or 'none'}"
    )


@main.command()
@click.argument("slug")
def generations(slug: str) -> None:
    """A container's collection generations: state, embedder version, points, which one is live."""
    from ops_pipelines.kb import ContainerNotFound
    from ops_pipelines.vectors import alias_name
    from ops_pipelines.vectors.serving import serving_collection

    kb = _kb()
    try:
        container = kb.get_container(slug)
        rows = kb.generations(container.id)
        if not rows:
            click.echo(f"{slug} has no generations yet: sync it with ops-pipelines sync {slug}")
            return
        with _vector_store() as store:
            serving = serving_collection(kb, store, container)
            points = {g.number: store.count(g.collection) if store.collection_dimension(g.collection) else None for g in rows}
    except ContainerNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        kb.close()
    for g in rows:
        count = "-" if points[g.number] is None else points[g.number]
        marker = f"  <- {alias_name(container.slug)}" if g.collection == serving else ""
        click.echo(f"g{g.number:<3} {g.state:<9} {g.embedder_version:<16} {count!s:>7} points  {g.collection}{marker}")


@main.command(name="export")
@click.argument("slug")
@click.option("--format", "fmt", type=click.Choice(["tar", "zip"]), default="tar", show_default=True)
@click.option("--no-vectors", is_flag=True, help="Leave out vectors.npy (an import then re-embeds).")
@click.option("--no-blobs", is_flag=True, help="Leave out the documents' raw bytes.")
@click.option("--url-expiry-hours", default=24, show_default=True, help="Lifetime of the signed URL (S3).")
def export_command(slug: str, fmt: str, no_vectors: bool, no_blobs: bool, url_expiry_hours: int) -> None:
    """Run export_job for one container: an archive in the object store and a URL to it."""
    from ops_pipelines.defs.partitions import containers_partitions

    instance = _instance()
    if not instance.has_dynamic_partition(containers_partitions.name, slug):
        raise click.ClickException(f"container {slug!r} is not registered: list them with ops-pipelines container list")
    config = {
        "format": fmt, "include_vectors": not no_vectors, "include_blobs": not no_blobs,
        "url_expiry_hours": url_expiry_hours,
    }
    result = _execute(instance, "export_job", slug, {"ops": {"container_export": {"config": config}}}, slug)
    _raise_on_failure(result, f"export of {slug}")
    md = _materializations(result, ["container_export"])["container_export"]
    click.echo(
        f"run {result.run_id}\n"
        f"  archive     {md['object_key']} in {md['object_store']} ({md['format']}, {md['size_bytes']} bytes)\n"
        f"  sha256      {md['sha256']}\n"
        f"  contents    {md['documents']} documents, {md['chunks']} chunks, {md.get('vectors', 0)} vectors, "
        f"{md.get('blobs', 0)} blobs ({md['embedder_version']})\n"
        f"  url         {md['url']}"
        + (f"\n  expires     {md['url_expires_at']}" if "url_expires_at" in md else "")
    )


@main.command(name="import")
@click.argument("archive")
@click.option("--slug", default=None, help="Slug to import under (default: the archive's).")
@click.option("--force", is_flag=True, help="Replace an existing container of that slug.")
@click.option("--embedder-version", default=None, help="Target embedder version (default: the archive's).")
def import_command(archive: str, slug: str | None, force: bool, embedder_version: str | None) -> None:
    """Run import_job: verify ARCHIVE (object key, path or URL) and create a container from it."""
    config = {"archive": archive, "slug": slug, "force": force, "embedder_version": embedder_version}
    result = _execute(_instance(), "import_job", None, {"ops": {"import_container": {"config": config}}}, slug or "")
    _raise_on_failure(result, "import")
    (mat,) = result.asset_materializations_for_node("import_container")
    md = {k: v.value for k, v in mat.metadata.items()}
    vectors = "vectors from the archive" if md["vectors_from_archive"] else f"{md['embedded']} chunks embedded"
    click.echo(
        f"run {result.run_id}\n"
        f"  container   {mat.partition} ({md['embedder_version']}){' replaced' if md['replaced'] else ''}\n"
        f"  contents    {md['documents']} documents, {md['chunks']} chunks, {md['blobs']} blobs; {vectors}\n"
        f"  collection  {md['collection']}, {md['checks_passed']}/6 checks passed"
    )


@main.group()
def archive() -> None:
    """Container archives."""


@archive.command("verify")
@click.argument("source")
def archive_verify(source: str) -> None:
    """Check every member of an archive (path, object key or URL) against its manifest."""
    import tempfile
    import urllib.parse

    from ops_pipelines.archives import ArchiveError, fetch_archive, read_archive
    from ops_pipelines.objects import ObjectStoreUnavailable, open_object_store

    local = urllib.parse.urlsplit(source).scheme in ("http", "https", "file") or Path(source).is_file()
    with tempfile.TemporaryDirectory(prefix="ops-verify-") as tmp:
        try:
            # The object store is only opened for an object key.
            verified = read_archive(fetch_archive(source, None if local else open_object_store(), Path(tmp)))
        except ArchiveError as exc:
            raise click.ClickException(f"INVALID: {exc}") from exc
        except ObjectStoreUnavailable as exc:
            raise click.ClickException(str(exc)) from exc
    m = verified.manifest
    counts = ", ".join(f"{n} {k}" for k, n in m["counts"].items())
    click.echo(
        f"OK {verified.format} archive, format version {m['format_version']}, created {m['created_at']}\n"
        f"  container   {m['container']['slug']} ({m['container']['id']})\n"
        f"  embedder    {m['embedder']['version']}, {m['embedder']['dimension']}-d\n"
        f"  contents    {counts}\n"
        f"  members     {len(m['members']) + 1}, every size and sha256 as in the manifest"
    )


@main.group()
def backup() -> None:
    """Backups of the whole knowledge base (backup_job; restore with `ops-pipelines restore`)."""


@backup.command("create")
@click.option("--no-blobs", is_flag=True, help="Leave out the documents' raw bytes.")
def backup_create(no_blobs: bool) -> None:
    """Run backup_job now: one archive of the metadata DB, every live and retained collection and the blobs."""
    config = {"ops": {"kb_backup": {"config": {"include_blobs": not no_blobs}}}}
    result = _execute(_instance(), "backup_job", None, config, "")
    _raise_on_failure(result, "backup")
    md = _materializations(result, ["kb_backup"])["kb_backup"]
    click.echo(
        f"run {result.run_id}\n"
        f"  backup      {md['object_key']} in {md['object_store']} ({md['size_bytes']} bytes)\n"
        f"  sha256      {md['sha256']}\n"
        f"  contents    {md['containers']} containers, {md['documents']} documents, {md['chunks']} chunks, "
        f"{md['collections']} collections ({md['points']} points), {md['blobs']} blobs"
    )


@backup.command("list")
def backup_list() -> None:
    """Backups in the object store, newest first."""
    from ops_pipelines.backup import backups_table
    from ops_pipelines.objects import ObjectStoreUnavailable, open_object_store

    try:
        table = backups_table(open_object_store())
    except ObjectStoreUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(table.to_string(index=False) if len(table) else "no backups; make one with: ops-pipelines backup create")


@main.command(name="restore")
@click.argument("backup_ref", metavar="[BACKUP]", default="latest")
@click.option("--dry-run", is_flag=True, help="Verify the backup and print what would change; change nothing.")
@click.option("--force", is_flag=True, help="Replace a knowledge base that has containers.")
def restore_command(backup_ref: str, dry_run: bool, force: bool) -> None:
    """Run restore_job: BACKUP is latest (default), a backup run id, an object key, a path or a URL."""
    config = {"backup": backup_ref, "dry_run": dry_run, "force": force}
    result = _execute(_instance(), "restore_job", None, {"ops": {"restore_knowledge_base": {"config": config}}}, "")
    _raise_on_failure(result, "restore")
    (obs,) = [e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    md = {k: v.value for k, v in obs.metadata.items()}
    rows = [r.data for r in md["plan"].records]
    click.echo(f"run {result.run_id}: {'DRY RUN, nothing changed' if dry_run else 'restored'} from {md['backup']}")
    for r in rows:
        click.echo(
            f"  {r['action']:<8} {r['container']:<20} documents {r['documents_now']} -> {r['documents_backup']}, "
            f"chunks {r['chunks_now']} -> {r['chunks_backup']}  {r['live_collection'] or ''}"
        )
    click.echo(f"  {md['collections']} collections, {md['points']} points; {md['drops']} current collections dropped")
    if not dry_run:
        seconds = {k.removesuffix("_seconds"): v for k, v in md.items() if k.endswith("_seconds")}
        click.echo("  seconds     " + ", ".join(f"{k} {v}" for k, v in seconds.items()))


@main.command()
def health() -> None:
    """Probe the metadata DB, Qdrant, the object store, the embedders and the Dagster instance; exit 1 on a failure.
    Containers not synced within OPS_SYNC_MAX_AGE_HOURS are a warning (exit 0)."""
    from ops_pipelines.health import check_all, probe_freshness
    from ops_pipelines.objects import open_object_store

    results = check_all(settings.kb_url(), _vector_store, open_object_store, _instance())
    for r in results:
        click.echo(f"{r.component:<17} {'ok' if r.ok else 'FAIL':<5} {r.latency_ms:>8.1f} ms  {r.detail}")
    fresh = probe_freshness(settings.kb_url())
    click.echo(f"{fresh.component:<17} {'ok' if fresh.ok else 'warn':<5} {fresh.latency_ms:>8.1f} ms  {fresh.detail}")
    failed = [r.component for r in results if not r.ok]
    if failed:
        raise click.ClickException(f"unhealthy: {', '.join(failed)}")


def _remote():
    from ops_pipelines.remote import DagsterRemote, RemoteError

    try:
        return DagsterRemote(settings.dagster_url())
    except RemoteError as exc:
        raise click.ClickException(str(exc)) from exc


def _run_config(config_json: tuple[str, ...]) -> dict:
    """The --config-json documents, each a JSON object, deep-merged in order."""
    import json

    merged: dict = {}
    for text in config_json:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--config-json") from exc
        if not isinstance(value, dict):
            raise click.BadParameter("must be a JSON object (the run config)", param_hint="--config-json")
        merged = _deep_merge(merged, value)
    return merged


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        both_dicts = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _deep_merge(merged[key], value) if both_dicts else value
    return merged


def _stamp(text: str) -> None:
    import datetime

    click.echo(f"  {datetime.datetime.now().strftime('%H:%M:%S')}  {text}")


_WAIT_HELP = "Follow it until it ends, printing each status; exit 1 if it fails, naming the step and error."
_TIMEOUT_HELP = "With --wait: give up waiting after this many seconds (exit 1; the run goes on)."


@main.command()
@click.argument("job")
@click.option("--container", default=None, help="Container slug: the partition of sync_job, export_job, refresh_job.")
@click.option("--embedder-version", default=None, help="Embedder version: refresh_job's second partition dimension.")
@click.option("--config-json", multiple=True, help="Run config as a JSON object; repeat to merge several.")
@click.option("--wait", is_flag=True, help=_WAIT_HELP)
@click.option("--timeout", type=float, default=None, help=_TIMEOUT_HELP)
def trigger(
    job: str, container: str | None, embedder_version: str | None, config_json: tuple[str, ...], wait: bool,
    timeout: float | None,
) -> None:
    """Launch JOB on the Dagster webserver at DAGSTER_URL (GraphQL); print the run id."""
    from ops_pipelines.remote import RemoteError, follow_run, launch_run

    run_config = _run_config(config_json)
    remote = _remote()
    try:
        launched = launch_run(remote, job, container, embedder_version, run_config)
        click.echo(f"run {launched.run_id}  {job}" + (f"  partition {launched.partition}" if launched.partition else ""))
        click.echo(f"  {remote.run_url(launched.run_id)}")
        if not wait:
            return
        outcome = follow_run(remote, launched.run_id, _stamp, timeout=timeout)
    except RemoteError as exc:
        raise click.ClickException(str(exc)) from exc
    if not outcome.success:
        failures = "\n".join(f"  {f}" for f in outcome.failures)
        raise click.ClickException(f"run {outcome.run_id} of {job} ended {outcome.status}\n{failures}")


def _backfill_change(run_id: str | None, partition: str, status: str) -> None:
    _stamp(f"backfill {status}" if run_id is None else f"run {run_id}  {partition}  {status}")


@main.command()
@click.argument("target", metavar="JOB_OR_ASSETS")
@click.option("--partitions", multiple=True, help="Partition keys, comma-separated or repeated (docs|hash-256@2).")
@click.option("--all-containers", is_flag=True, help="Every container (the containers partitions).")
@click.option("--embedder-version", default=None, help="With --all-containers: the embedder version to refresh to.")
@click.option("--config-json", multiple=True, help="Run config of every run, as a JSON object; repeat to merge.")
@click.option("--title", default=None, help="Title shown in the UI's backfills list.")
@click.option("--wait", is_flag=True, help=_WAIT_HELP)
@click.option("--timeout", type=float, default=None, help=_TIMEOUT_HELP)
def backfill(
    target: str, partitions: tuple[str, ...], all_containers: bool, embedder_version: str | None,
    config_json: tuple[str, ...], title: str | None, wait: bool, timeout: float | None,
) -> None:
    """Backfill a job (refresh_job, sync_job, ...) or assets (a,b,c) over partitions through the
    webserver at DAGSTER_URL (launchPartitionBackfill); print the backfill id."""
    from ops_pipelines.remote import RemoteError, follow_backfill, launch_backfill, partition_keys, resolve_target

    run_config = _run_config(config_json)
    keys_given = [k.strip() for item in partitions for k in item.split(",") if k.strip()]
    remote = _remote()
    try:
        resolved = resolve_target(remote, target)
        keys = partition_keys(resolved, keys_given, all_containers, embedder_version)
        backfill_id = launch_backfill(remote, resolved, keys, run_config, title)
        click.echo(f"backfill {backfill_id}  {resolved.label}  {len(keys)} partitions: {', '.join(keys)}")
        click.echo(f"  {remote.backfill_url(backfill_id)}")
        if not wait:
            return
        outcome = follow_backfill(remote, backfill_id, _backfill_change, timeout=timeout)
    except RemoteError as exc:
        raise click.ClickException(str(exc)) from exc
    if not outcome.success:
        lines = [f"backfill {backfill_id} of {resolved.label} ended {outcome.status}"]
        if outcome.error:
            lines.append(f"  {outcome.error}")
        for run_id, failures in outcome.failures.items():
            partition, status = outcome.runs[run_id]
            lines += [f"  run {run_id} ({partition}) {status}"] + [f"    {f}" for f in failures]
        raise click.ClickException("\n".join(lines))


@main.command()
@click.argument("slug")
@click.argument("query")
@click.option("--limit", default=5, show_default=True)
def search(slug: str, query: str, limit: int) -> None:
    """Search a container through its live alias."""
    for line in format_hits(run_search(slug, query, limit)):
        click.echo(line)


def run_search(slug: str, query: str, limit: int):
    from ops_pipelines.kb import ContainerNotFound
    from ops_pipelines.search import NotSynced, search_container

    kb = _kb()
    try:
        with _vector_store() as store:
            return search_container(kb, store, slug, query, limit)
    except (ContainerNotFound, NotSynced) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        kb.close()


def format_hits(hits) -> list[str]:
    lines = []
    for rank, hit in enumerate(hits, start=1):
        snippet = textwrap.shorten(" ".join(hit.payload.get("text", "").split()), 110)
        lines.append(f"{rank}. {hit.score:.3f}  {hit.payload.get('title')}  [{hit.payload.get('source_key')}]")
        lines.append(f"     {snippet}")
    return lines or ["no hits"]


@main.command()
@click.option("--source", "source_spec", default=None, help="Default: folder:<repo>/docs")
@click.option("--slug", default="docs", show_default=True)
@click.option("--embedder", default=None, help="Default: minilm-l6-v2@1")
@click.option("--query", default=DEMO_QUERY, show_default=True)
def demo(source_spec: str | None, slug: str, embedder: str | None, query: str) -> None:
    """Register the demo container (if new), sync it, search it, say where to look next."""
    from ops_pipelines.kb import ContainerNotFound

    source_spec = source_spec or f"folder:{Path(__file__).resolve().parent.parent / 'docs'}"
    kb = _kb()
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


if __name__ == "__main__":  # pragma: no cover
    main()
