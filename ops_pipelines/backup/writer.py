"""Write one backup of the whole knowledge base (see ``backup.format``).

The DB is copied first, as one consistent snapshot; then each live and retained generation is
added: the embedded engine's as its shard's files (``backup.shards``), a server's as its points
scrolled out (``backup.points``). A live collection whose point ids differ from what the copied
DB says it should hold means something wrote meanwhile (or the KB already had orphans), and the
backup fails rather than store a pair that could not pass its checks after a restore.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ops_pipelines.archives.format import BLOBS, MANIFEST, ArchiveError
from ops_pipelines.archives.writer import (
    ArchiveReport,
    ArchiveSources,
    BlobList,
    manifest_members,
    write_manifest,
    write_tar,
)
from ops_pipelines.backup.database import blob_hashes, dump_database, open_copy, schema_version_of
from ops_pipelines.backup.format import DATABASE, FORMAT, FORMAT_VERSION, POINTS_LAYOUT, SHARD
from ops_pipelines.backup.points import dump_collection
from ops_pipelines.backup.shards import dump_shard, file_facts
from ops_pipelines.embedders import get_version
from ops_pipelines.ingest import expected_points
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.kb.generations import LIVE, RETIRED
from ops_pipelines.objects import ObjectStore
from ops_pipelines.vectors import VectorStore
from ops_pipelines.vectors.ids import EMPTY

_log = logging.getLogger(__name__)


class BackupError(ArchiveError):
    """The backup could not be made; nothing was stored."""


def write_backup(
    kb: KnowledgeBase,
    store: VectorStore,
    objects: ObjectStore,
    out_path: str | os.PathLike,
    run_id: str = "",
    include_blobs: bool = True,
    created_at: datetime | None = None,
    log: logging.Logger = _log,
) -> ArchiveReport:
    out_path = Path(out_path)
    created_at = created_at or datetime.now(UTC)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".staging-") as tmp:
        staging = Path(tmp)
        rows = dump_database(kb, staging / DATABASE)
        log.info("backup: database copied: %s", ", ".join(f"{n} {t}" for t, n in rows.items()))
        members: dict[str, dict] = {}
        with open_copy(staging / DATABASE) as snapshot:
            containers, collections = _dump_collections(snapshot, store, staging, members, log)
        blobs = BlobList.empty()
        if include_blobs:
            blobs = BlobList.of(blob_hashes(staging / DATABASE), objects, "the knowledge base", operation="back up")
            log.info("backup: %d blobs", len(blobs))
        members = {DATABASE: file_facts(staging / DATABASE), **members}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": created_at.isoformat(),
            "run_id": run_id,
            "database": {"dialect": kb.engine.dialect.name, "schema_version": schema_version_of(staging / DATABASE)},
            "containers": containers,
            "collections": collections,
            "options": {"include_blobs": include_blobs},
            "counts": {
                **rows,
                "collections": len(collections),
                "points": sum(c["points"] for c in collections),
                "blobs": len(blobs),
            },
            "members": manifest_members(members),
            BLOBS: blobs.summary(),
        }
        write_manifest(staging / MANIFEST, manifest)
        partial = out_path.with_name(out_path.name + ".partial")
        try:
            written = write_tar(partial, ArchiveSources(staging, objects, members, blobs), created_at)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, out_path)
    log.info("backup: %s written, %d bytes, sha256 %s", out_path.name, written["size"], written["sha256"])
    return ArchiveReport(out_path, "tar", written["size"], written["sha256"], manifest)


def _dump_collections(snapshot: KnowledgeBase, store: VectorStore, staging: Path, members: dict, log) -> tuple:
    containers, collections = [], []
    for container in snapshot.list_containers():
        live = snapshot.live_generation(container.id)
        expected = expected_points(snapshot, container, get_version(live.embedder_version).chunker).ids if live else EMPTY
        for generation in snapshot.generations(container.id):
            if generation.state not in (LIVE, RETIRED):
                continue
            if generation.state == RETIRED and store.collection_dimension(generation.collection) is None:
                log.warning("backup: retired %s has no collection in Qdrant; not backed up", generation.collection)
                continue
            # The embedded engine's shards are copied as files; a server's points are scrolled out.
            dump = dump_shard if store.keeps_files else dump_collection
            dumped = dump(store, generation.collection, staging)
            store.release(generation.collection)  # one collection open at a time
            if generation.state == LIVE and not np.array_equal(dumped.ids, expected):
                raise BackupError(
                    f"live collection {generation.collection} of {container.slug!r} holds "
                    f"{len(np.setdiff1d(dumped.ids, expected))} points the database does not have and lacks "
                    f"{len(np.setdiff1d(expected, dumped.ids))}: something wrote while the backup ran, or the knowledge "
                    "base has orphans. Run maintenance_job (orphan repair), then the backup again"
                )
            members.update(dumped.members)
            collections.append(
                {
                    "name": generation.collection,
                    "container_id": container.id,
                    "generation": generation.number,
                    "state": generation.state,
                    "embedder_version": generation.embedder_version,
                    "dimension": dumped.dimension,
                    "hybrid": dumped.hybrid,
                    "points": dumped.points,
                    "layout": SHARD if store.keeps_files else POINTS_LAYOUT,
                    **({"lengths": dumped.lengths} if dumped.lengths is not None else {}),
                }
            )
            log.info("backup: %s (%s): %d points", generation.collection, generation.state, dumped.points)
        containers.append(
            {
                "id": container.id,
                "slug": container.slug,
                "embedder_version": container.embedder_version,
                "live_generation": live.number if live else None,
                "active_chunks": len(expected),
            }
        )
    return containers, collections

