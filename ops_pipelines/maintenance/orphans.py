"""Orphans: what Qdrant and the object store hold that the knowledge base does not, and the reverse.

- In each container's live generation: points that no active chunk produces (left by a run that
  died between the DB write and the Qdrant delete, or by a hand edit) and active chunks without
  their point. Point ids are deterministic, so the comparison is by id.
- Collections named like a generation (``kb_<slug>__<version>__g<n>``) that no generation record
  (other than a dropped one) and no alias refers to: left by a killed import, restore or refresh.
- Blobs that no document refers to (a sync that died before writing its document rows, a purge
  that died before deleting its blobs).

Every repair only deletes what is found unreferenced and writes what is missing, so running it
again finds nothing. It assumes nothing else writes meanwhile (blobs younger than ``min_age``
are kept all the same: a sync writes a blob before the document row that refers to it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select

from ops_pipelines.embedders import Embedder, get_version
from ops_pipelines.ingest import embed_chunks
from ops_pipelines.ingest.collection import chunk_payload
from ops_pipelines.kb import ChunkRow, Container, Generation, KnowledgeBase, schema
from ops_pipelines.kb.generations import DROPPED
from ops_pipelines.maintenance.common import cutoff, frame
from ops_pipelines.objects import ObjectStore
from ops_pipelines.vectors import VectorStore, point_id
from ops_pipelines.vectors.serving import served_collections

_log = logging.getLogger(__name__)

POINT_WITHOUT_CHUNK = "point without chunk"
CHUNK_WITHOUT_POINT = "chunk without point"
# a generation's collection, or its copy written by a restore (``<name>__r<token>``)
GENERATION_COLLECTION = re.compile(r"^kb_[a-z0-9][a-z0-9-]*__[a-z0-9-]+__g[0-9]+(__r[0-9a-f]{8})?$")
BLOB_KEY = re.compile(r"^blobs/([0-9a-f]{2})/(\1[0-9a-f]{62})$")
BLOB_MIN_AGE = timedelta(days=1)


@dataclass(frozen=True)
class OrphanPoint:
    container: str  # slug
    collection: str
    kind: str  # POINT_WITHOUT_CHUNK or CHUNK_WITHOUT_POINT
    point_id: str
    source_key: str | None  # from the chunk, or from the point's payload
    ordinal: int | None


@dataclass(frozen=True)
class RepairedPoint:
    orphan: OrphanPoint
    action: str  # deleted, written, not repaired: ... (or "would ..." on a dry run)


@dataclass(frozen=True)
class OrphanRepairReport:
    points: tuple[RepairedPoint, ...]
    deleted: int  # points without chunk removed
    written: int  # chunks without point given their point
    embedded: int  # chunk vectors computed first because the cache lacked them
    unrepaired: int  # chunks without point left so: no cached vector and no embedder given
    dry_run: bool

    @property
    def table(self) -> pd.DataFrame:
        found = frame(OrphanPoint, (p.orphan for p in self.points))
        return found.assign(action=[p.action for p in self.points])


@dataclass(frozen=True)
class OrphanCollection:
    collection: str
    points: int
    action: str  # dropped, or "would drop" on a dry run


@dataclass(frozen=True)
class OrphanCollectionsReport:
    collections: tuple[OrphanCollection, ...]
    dry_run: bool

    @property
    def table(self) -> pd.DataFrame:
        return frame(OrphanCollection, self.collections)


@dataclass(frozen=True)
class OrphanBlob:
    key: str
    size: int | None
    action: str  # deleted / "would delete" / "kept: ..." for young or unrecognised keys


@dataclass(frozen=True)
class OrphanBlobsReport:
    blobs: tuple[OrphanBlob, ...]
    dry_run: bool

    @property
    def deleted(self) -> int:
        return sum(b.action in ("deleted", "would delete") for b in self.blobs)

    @property
    def table(self) -> pd.DataFrame:
        return frame(OrphanBlob, self.blobs)


@dataclass(frozen=True)
class _LiveScan:
    """One container's live generation compared with its active chunks."""

    container: Container
    generation: Generation
    collection_exists: bool
    extra: dict[str, dict]  # point id -> payload (source_key, ordinal) of points with no chunk
    missing: dict[str, ChunkRow]  # point id -> chunk, for chunks with no point

    def orphans(self) -> Iterator[tuple[OrphanPoint, ChunkRow | None]]:
        slug, collection = self.container.slug, self.generation.collection
        for pid, payload in sorted(self.extra.items()):
            source_key, ordinal = payload.get("source_key"), payload.get("ordinal")
            yield OrphanPoint(slug, collection, POINT_WITHOUT_CHUNK, pid, source_key, ordinal), None
        for pid, row in sorted(self.missing.items(), key=lambda item: (item[1].source_key, item[1].ordinal)):
            yield OrphanPoint(slug, collection, CHUNK_WITHOUT_POINT, pid, row.source_key, row.ordinal), row


def find_orphans(kb: KnowledgeBase, store: VectorStore, log: logging.Logger = _log) -> pd.DataFrame:
    """Points without chunk and chunks without point in every container's live generation."""
    scans = _scan_live_generations(kb, store, log)
    return frame(OrphanPoint, (orphan for scan in scans for orphan, _ in scan.orphans()))


def repair_orphans(
    kb: KnowledgeBase,
    store: VectorStore,
    load_embedder: Callable[[str], Embedder] | None = None,
    dry_run: bool = False,
    batch_size: int = 256,
    log: logging.Logger = _log,
) -> OrphanRepairReport:
    """Delete points without chunk; write chunks without point from the embedding cache.

    A chunk whose vector the cache lacks (for the live generation's embedder version) is embedded
    first with ``load_embedder``, or, without one, left as it is and reported "not repaired".
    """
    points: list[RepairedPoint] = []
    deleted = written = embedded = unrepaired = 0
    for scan in _scan_live_generations(kb, store, log):
        if not scan.extra and not scan.missing:
            continue
        collection, version = scan.generation.collection, scan.generation.embedder_version
        hashes = {row.content_hash for row in scan.missing.values()}
        uncached = hashes - kb.get_embeddings(version, hashes, scan.container.id).keys()
        if uncached and load_embedder is not None and not dry_run:
            embedded += embed_chunks(kb, scan.container, load_embedder, version, log=log).computed
            uncached = hashes - kb.get_embeddings(version, hashes, scan.container.id).keys()
        writable: list[str] = []
        unrepaired_here = 0
        for orphan, row in scan.orphans():
            if row is None:
                action = "would delete" if dry_run else "deleted"
                deleted += 1
            elif row.content_hash not in uncached:
                action = "would write" if dry_run else "written"
                writable.append(orphan.point_id)
                written += 1
            elif load_embedder is not None:  # only on a dry run: otherwise embedded above
                action = "would embed and write"
                written += 1
            else:
                action = f"not repaired: no cached {version} vector (run sync's embeddings step)"
                unrepaired_here += 1
            points.append(RepairedPoint(orphan, action))
        if unrepaired_here:
            log.warning("%s: %d chunks without point have no cached %s vector", collection, unrepaired_here, version)
        unrepaired += unrepaired_here
        if not dry_run:
            if not scan.collection_exists:
                store.ensure_collection(collection, get_version(version).dimension, get_version(version).hybrid)
            _repair(kb, store, scan, writable, batch_size, log)
    return OrphanRepairReport(tuple(points), deleted, written, embedded, unrepaired, dry_run)


def drop_orphan_collections(
    kb: KnowledgeBase, store: VectorStore, dry_run: bool = False, log: logging.Logger = _log
) -> OrphanCollectionsReport:
    """Drop collections named like a generation that no live, retired or building generation
    record names and no alias points at. Collections named otherwise are never touched."""
    referenced = served_collections(kb, store)
    for container in kb.list_containers(every_state=True):  # an import's container too
        referenced.update(g.collection for g in kb.generations(container.id) if g.state != DROPPED)
    found = []
    for name in store.collection_names():
        if not GENERATION_COLLECTION.match(name) or name in referenced:
            continue
        found.append(OrphanCollection(name, store.count(name), "would drop" if dry_run else "dropped"))
        if not dry_run:
            store.drop_collection(name)
        log.info("%s orphan collection %s (%d points)", "would drop" if dry_run else "dropped", name, found[-1].points)
    return OrphanCollectionsReport(tuple(found), dry_run)


def delete_orphan_blobs(
    kb: KnowledgeBase,
    objects: ObjectStore,
    min_age: timedelta = BLOB_MIN_AGE,
    now: datetime | None = None,
    dry_run: bool = False,
    log: logging.Logger = _log,
) -> OrphanBlobsReport:
    """Delete blobs (``blobs/<aa>/<sha256>``) that no document of any container, active or
    archived, refers to and that are older than ``min_age``. Other keys under ``blobs/`` are
    reported and kept."""
    d = schema.documents.c
    with kb.engine.connect() as conn:
        referenced = set(conn.execute(select(d.raw_sha256).distinct()).scalars())
    youngest_deletable = cutoff(min_age, now)
    found = []
    for key, modified in sorted(objects.list_modified("blobs/")):
        match = BLOB_KEY.match(key)
        if match is None:
            found.append(OrphanBlob(key, None, "kept: not a blob key"))
            continue
        if match.group(2) in referenced:
            continue
        if modified > youngest_deletable:
            found.append(OrphanBlob(key, objects.size(key), f"kept: younger than {min_age.total_seconds() / 3600:g} h"))
            continue
        found.append(OrphanBlob(key, objects.size(key), "would delete" if dry_run else "deleted"))
        if not dry_run:
            objects.delete(key)
    report = OrphanBlobsReport(tuple(found), dry_run)
    log.info("orphan blobs: %d %s", report.deleted, "to delete" if dry_run else "deleted")
    return report


def _scan_live_generations(kb: KnowledgeBase, store: VectorStore, log: logging.Logger) -> Iterator[_LiveScan]:
    for container in kb.list_containers():
        live = kb.live_generation(container.id)
        if live is None:
            log.info("%s has no live generation (never synced): no points to compare", container.slug)
            continue
        wanted = expected_rows(kb, container, get_version(live.embedder_version).chunker)
        exists = store.collection_dimension(live.collection) is not None
        present: set[str] = set()
        extra: dict[str, dict] = {}
        if exists:
            for point in store.scroll(live.collection, with_payload=["source_key", "ordinal"]):
                pid = point.id
                present.add(pid)
                if pid not in wanted:
                    extra[pid] = point.payload or {}
        else:
            log.warning("%s: live collection %s is missing from Qdrant", container.slug, live.collection)
        missing = {pid: row for pid, row in wanted.items() if pid not in present}
        log.info(
            "%s (%s): %d points without chunk, %d chunks without point",
            container.slug, live.collection, len(extra), len(missing),
        )
        yield _LiveScan(container, live, exists, extra, missing)


def _repair(kb: KnowledgeBase, store: VectorStore, scan: _LiveScan, writable: list[str], batch_size: int, log) -> None:
    collection, version = scan.generation.collection, scan.generation.embedder_version
    if scan.extra:
        store.delete(collection, sorted(scan.extra))
        log.info("%s: %d points without chunk deleted", collection, len(scan.extra))
    for start in range(0, len(writable), batch_size):
        ids = writable[start : start + batch_size]
        rows = [scan.missing[pid] for pid in ids]
        cached = kb.get_embeddings(version, [r.content_hash for r in rows], scan.container.id)
        vectors = np.stack([cached[r.content_hash] for r in rows])
        store.upsert(collection, ids, vectors, [chunk_payload(scan.container, r) for r in rows])
        log.info("%s: %d/%d chunks without point written", collection, start + len(rows), len(writable))


def expected_rows(kb: KnowledgeBase, container: Container, chunker: str) -> dict[str, ChunkRow]:
    """Point id -> chunk of every active chunk ``chunker`` cut (the repair needs the rows of the missing ones)."""
    return {
        point_id(container.id, r.document_id, r.ordinal, r.content_hash): r for r in kb.active_chunks(container.id, chunker)
    }
