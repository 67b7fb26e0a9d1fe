"""Purge of archived documents: gone from their source long enough that nobody will sync them back.

A document archived within the retention period comes back as it was (``unarchived``) if its
source record reappears; after it, the row, its chunks (by the foreign key's ON DELETE CASCADE,
which the knowledge base enables on SQLite too) and its blob go. A blob is content-addressed and
shared: it is deleted only when no remaining document of any container, active or archived,
refers to it. The documents are deleted first, so a purge that dies in between leaves blobs no
document refers to, which ``orphans.delete_orphan_blobs`` removes; never a document without its
blob.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import delete, func, or_, select

from ops_pipelines.kb import KnowledgeBase, schema
from ops_pipelines.maintenance.common import cutoff, frame
from ops_pipelines.objects import ObjectStore, blob_key

_log = logging.getLogger(__name__)

ARCHIVED_DOCUMENT_RETENTION = timedelta(days=30)
_BATCH = 500  # ids per IN (...) list


@dataclass(frozen=True)
class PurgedDocuments:
    container: str  # slug
    documents: int
    chunks: int
    blobs: int  # blobs deleted that this container's purged documents referred to


@dataclass(frozen=True)
class DocumentPurgeReport:
    cutoff: datetime  # documents archived before it were purged
    containers: tuple[PurgedDocuments, ...]
    blobs_deleted: int  # distinct blobs (one may have been shared by several containers)
    dry_run: bool

    @property
    def documents(self) -> int:
        return sum(c.documents for c in self.containers)

    @property
    def table(self) -> pd.DataFrame:
        return frame(PurgedDocuments, self.containers)


def purge_archived_documents(
    kb: KnowledgeBase,
    objects: ObjectStore,
    older_than: timedelta = ARCHIVED_DOCUMENT_RETENTION,
    now: datetime | None = None,
    dry_run: bool = False,
    log: logging.Logger = _log,
) -> DocumentPurgeReport:
    """Delete documents archived more than ``older_than`` ago, their chunks, and the blobs no
    other document refers to. On a dry run, counts what would go and deletes nothing."""
    before = cutoff(older_than, now)
    d, ch = schema.documents.c, schema.chunks.c
    purgeable = (d.status == "archived", d.archived_at < before)
    with kb.engine.begin() as conn:
        doomed = conn.execute(select(d.id, d.container_id, d.raw_sha256).where(*purgeable)).all()
        chunks = dict(
            conn.execute(
                select(d.container_id, func.count())
                .select_from(schema.chunks.join(schema.documents, ch.document_id == d.id))
                .where(*purgeable)
                .group_by(d.container_id)
            ).all()
        )
        # The complement of ``purgeable``, written out so that a NULL archived_at counts as kept.
        remaining = or_(d.status != "archived", d.archived_at.is_(None), d.archived_at >= before)
        candidates = sorted({r.raw_sha256 for r in doomed})
        still_referenced = set()
        for batch in _batches(candidates):
            referring = select(d.raw_sha256).where(d.raw_sha256.in_(batch), remaining)
            still_referenced.update(conn.execute(referring).scalars())
        if not dry_run:
            for batch in _batches([r.id for r in doomed]):
                conn.execute(delete(schema.documents).where(d.id.in_(batch)))
    freed = {sha for sha in candidates if sha not in still_referenced and objects.exists(blob_key(sha))}
    if not dry_run:
        for sha in sorted(freed):
            objects.delete(blob_key(sha))

    slugs = {c.id: c.slug for c in kb.list_containers(every_state=True)}
    documents, blobs = defaultdict(int), defaultdict(set)
    for row in doomed:
        documents[row.container_id] += 1
        if row.raw_sha256 in freed:
            blobs[row.container_id].add(row.raw_sha256)
    per_container = tuple(
        PurgedDocuments(slugs[cid], documents[cid], chunks.get(cid, 0), len(blobs[cid]))
        for cid in sorted(documents, key=slugs.__getitem__)
    )
    log.info(
        "archived documents before %s: %d documents, %d blobs %s",
        before.isoformat(), len(doomed), len(freed), "to purge" if dry_run else "purged",
    )
    return DocumentPurgeReport(before, per_container, len(freed), dry_run)


def _batches(items: list) -> list[list]:
    return [items[i : i + _BATCH] for i in range(0, len(items), _BATCH)]
