"""The whole knowledge base as one verified backup in the object store."""

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from ops_pipelines.backup import backup_key, write_backup
from ops_pipelines.defs.errors import operator_errors
from ops_pipelines.defs.lineage import OBJECTS, OWNERS, capability
from ops_pipelines.defs.metadata import table
from ops_pipelines.defs.resources import KnowledgeBaseResource, ObjectStoreResource, VectorStoreResource
from ops_pipelines.defs.sync.assets import chunks, live_collection


class BackupConfig(Config):
    include_blobs: bool = Field(default=True, description="`blobs/<sha256>`: the raw bytes of every document.")


@asset(
    group_name="backup",
    owners=OWNERS,
    tags=capability("backup"),
    deps=[chunks, live_collection],
    # In the object store; the archive holds the metadata DB as a SQLite file, whatever the backend.
    kinds={OBJECTS, "sqlite"},
    description=(
        "One consistent backup of the whole knowledge base: the metadata DB, every live and retained "
        "collection's points, the blobs, and a checksummed manifest, at `backups/<timestamp>_<run id>.tar` "
        "in the object store. Restore it with restore_job or `ops-pipelines restore`."
    ),
)
def kb_backup(
    context: AssetExecutionContext,
    config: BackupConfig,
    kb: KnowledgeBaseResource,
    vectors: VectorStoreResource,
    objects: ObjectStoreResource,
) -> MaterializeResult:
    created_at = datetime.now(UTC)
    with (
        operator_errors(),
        kb.open() as store,
        vectors.open() as qdrant,
        tempfile.TemporaryDirectory(prefix="ops-backup-") as tmp,
    ):
        store_objects = objects.open()
        report = write_backup(
            store, qdrant, store_objects, Path(tmp) / "backup.tar", run_id=context.run_id,
            include_blobs=config.include_blobs, created_at=created_at, log=context.log,
        )
        key = backup_key(created_at, context.run_id)
        store_objects.put_file(key, report.path)
    context.log.info("backup stored at %s (%d bytes)", key, report.size)
    containers = pd.DataFrame(report.manifest["containers"])
    collections = pd.DataFrame(report.manifest["collections"])
    return MaterializeResult(
        metadata={
            "object_key": key,
            "object_store": store_objects.description,
            "size_bytes": report.size,
            "sha256": report.sha256,
            **{name: int(n) for name, n in report.counts.items()},
            "containers_table": table(containers),
            "collections_table": table(collections.drop(columns=["container_id", "lengths"], errors="ignore")),
            "restore": MetadataValue.text(f"ops-pipelines restore {context.run_id} --dry-run"),
        }
    )
