import tempfile
from pathlib import Path

from dagster import (
    AssetMaterialization,
    Config,
    OpExecutionContext,
    define_asset_job,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from ops_pipelines.archives import fetch_archive, import_archive, read_archive
from ops_pipelines.defs.errors import operator_errors
from ops_pipelines.defs.export.assets import container_export
from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.pools import QDRANT_WRITES
from ops_pipelines.defs.resources import (
    EmbeddersResource,
    KnowledgeBaseResource,
    ObjectStoreResource,
    VectorStoreResource,
)
from ops_pipelines.defs.serving import reconcile_live_alias
from ops_pipelines.defs.sync.assets import live_collection
from ops_pipelines.kb import holder_for
from ops_pipelines.vectors import alias_name

export_job = define_asset_job(
    "export_job",
    selection=[container_export],
    partitions_def=containers_partitions,
    description="Export one container (the partition) as an archive in the object store, with a signed URL.",
)


class ImportConfig(Config):
    archive: str = Field(
        description="Where the archive is: an object key (exports/...), a local path, a file:// or http(s):// URL."
    )
    slug: str | None = Field(default=None, description="Slug to import under; default: the archive's.")
    force: bool = Field(default=False, description="Replace an existing container of that slug.")
    embedder_version: str | None = Field(
        default=None,
        description="Embedder version of the new container; default: the archive's (its vectors are "
        "used as they are; another version re-embeds).",
    )


@op(description="Verify an archive completely, then create a container from it, all or nothing.", pool=QDRANT_WRITES)
def import_container(
    context: OpExecutionContext,
    config: ImportConfig,
    kb: KnowledgeBaseResource,
    objects: ObjectStoreResource,
    vectors: VectorStoreResource,
    embedders: EmbeddersResource,
) -> None:
    with (
        operator_errors(),
        tempfile.TemporaryDirectory(prefix="ops-import-") as tmp,
        kb.open() as store,
        vectors.open() as qdrant,
    ):
        store_objects = objects.open()
        path = fetch_archive(config.archive, store_objects, Path(tmp))
        verified = read_archive(path, Path(tmp) / "members")
        context.log.info("archive verified: %s members", verified.member_count)
        # It holds the leases of the containers it writes and removes, as this run.
        report = import_archive(
            store, store_objects, qdrant, verified, embedders.get,
            slug=config.slug, force=config.force, embedder_version=config.embedder_version,
            holder=holder_for(context.run_id), log=context.log,
        )
        live = store.live_generation(report.container.id)
    slug = report.container.slug
    if not context.instance.has_dynamic_partition(containers_partitions.name, slug):
        context.instance.add_dynamic_partitions(containers_partitions.name, [slug])
    with kb.open() as store:
        reconcile_live_alias(context.instance, store, context.log)
    context.log_event(
        AssetMaterialization(
            asset_key=live_collection.key,
            partition=slug,
            description=f"imported from {config.archive.split('?', 1)[0]}",
            metadata={
                "collection": report.collection,
                "alias": alias_name(slug),
                "generation": live.number if live else None,
                "embedder_version": report.container.embedder_version,
                "documents": report.documents,
                "chunks": report.chunks,
                "vectors_from_archive": report.vectors_from_archive,
                "embedded": report.embedded,
                "blobs": report.blobs,
                "replaced": report.replaced,
                "checks_passed": sum(c.passed for c in report.checks),
            },
        )
    )


@job(executor_def=in_process_executor, tags={"ops/operation": "import"}, description=import_container.description)
def import_job():
    import_container()
