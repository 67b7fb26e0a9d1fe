"""A container as a portable, checksummed archive in the object store."""

import tempfile
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from ops_pipelines.archives import archive_key, write_archive
from ops_pipelines.defs.errors import operator_errors
from ops_pipelines.defs.lineage import OBJECTS, OWNERS, capability
from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.resources import KnowledgeBaseResource, ObjectStoreResource
from ops_pipelines.defs.sync.assets import chunks, live_collection


class ArchiveFormat(Enum):
    tar = "tar"
    zip = "zip"


class ExportConfig(Config):
    format: ArchiveFormat = Field(default=ArchiveFormat.tar, description="tar (pax, uncompressed) or zip (stored, zip64).")
    include_vectors: bool = Field(default=True, description="vectors.npy: the chunks' vectors under the container's embedder version.")
    include_blobs: bool = Field(default=True, description="`blobs/<sha256>`: the raw bytes of every document.")
    url_expiry_hours: int = Field(default=24, ge=1, le=168, description="How long the signed download URL works (S3).")


@asset(
    partitions_def=containers_partitions,
    group_name="export",
    owners=OWNERS,
    tags=capability("export"),
    deps=[chunks, live_collection],
    kinds={OBJECTS},
    description=(
        "The container's active documents, chunks, vectors and blobs as an archive with a "
        "checksummed manifest, at `exports/<container id>/<run id>.<format>` in the object store; "
        "metadata has its key, size, sha256, counts and a signed download URL."
    ),
)
def container_export(
    context: AssetExecutionContext, config: ExportConfig, kb: KnowledgeBaseResource, objects: ObjectStoreResource
) -> MaterializeResult:
    fmt = config.format.value
    with operator_errors(), kb.open() as store, tempfile.TemporaryDirectory(prefix="ops-export-") as tmp:
        store_objects = objects.open()
        container = store.get_container(context.partition_key)
        report = write_archive(
            store, store_objects, container, Path(tmp) / f"export.{fmt}", fmt=fmt,
            include_vectors=config.include_vectors, include_blobs=config.include_blobs,
            run_id=context.run_id, log=context.log,
        )
        key = archive_key(container.id, context.run_id, fmt)
        store_objects.put_file(key, report.path)
        expiry = timedelta(hours=config.url_expiry_hours)
        url = store_objects.url(key, expiry)
    context.log.info("export of %s stored at %s (%d bytes)", container.slug, key, report.size)
    return MaterializeResult(
        metadata={
            "object_key": key,
            "object_store": store_objects.description,
            "format": fmt,
            "size_bytes": report.size,
            "sha256": report.sha256,
            **{name: int(n) for name, n in report.counts.items()},
            "embedder_version": container.embedder_version,
            "url": MetadataValue.url(url),
            **({"url_expires_at": (datetime.now(UTC) + expiry).isoformat(timespec="seconds")} if url.startswith("http") else {}),
            "verify": MetadataValue.text(f"ops-pipelines archive verify '{url}'"),
        }
    )
