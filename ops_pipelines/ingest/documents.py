"""Step 1 of sync: read a source and bring the container's documents up to date.

Content-hash dedupe with the runbook's counts: a record whose bytes did not change is
``skipped`` without being parsed; new ones are ``inserted``, changed ones ``updated``; documents
gone from the source are ``archived``, and ones that come back ``unarchived``. Unreadable records
are skipped and named, and are never archived for being unreadable; so are records larger than
the source's ``max_document_bytes``. A record whose bytes did not change but whose fields did
(the record fields declared for a JSONL source changed; a document synced before the knowledge
base kept fields) gets its new fields, and counts as skipped.

Remote sources (``IncrementalSource``) read either incrementally (only what changed since the
state saved by the last sync; nothing is archived) or fully (every record, so that vanished ones
are archived behind the same guards). ``mode="auto"`` picks a full pass when none was made in
``full_every`` and an incremental one otherwise; file sources are always read fully. The source's
new state is saved only after its documents are committed, and a full pass counts as made
(``full_synced_at``) only once its archiving is done: one the guards refused or withheld is due
again at the next ``auto`` sync.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import Container, DocumentState, DocumentWrite, KnowledgeBase, SourceState
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.objects import ObjectStore
from ops_pipelines.progress import Progress
from ops_pipelines.sources import (
    EXTRACTOR_VERSION,
    IncrementalSource,
    Source,
    SourceSkip,
    SourceUnchanged,
    UnreadableDocument,
    content_hash,
    sha256_hex,
    too_large,
)
from ops_pipelines.vectors.ids import contains

MODES = ("auto", "incremental", "full")
FULL_EVERY = timedelta(hours=24)

_log = logging.getLogger(__name__)


class ArchiveRefused(OperatorError, RuntimeError):
    """The source looks like it vanished, wholly or in part: nothing is archived."""


@dataclass
class DocumentSyncReport:
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    archived: int = 0
    unarchived: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    archive_withheld: str | None = None
    mode: str = "full"  # what was done: full or incremental
    state: dict | None = None  # the source state saved (remote sources)

    def counts(self) -> dict[str, int]:
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "skipped": self.skipped,
            "archived": self.archived,
            "unarchived": self.unarchived,
            "failed": self.failed,
        }


def source_hash(uri: str, raw_sha256: str) -> str:
    return sha256_hex(f"{EXTRACTOR_VERSION}\0{uri}\0{raw_sha256}".encode())


def choose_mode(source: Source, requested: str, state: SourceState, now: datetime, full_every: timedelta) -> str:
    """``full`` or ``incremental``: what a sync of ``source`` does when ``requested`` is asked."""
    if requested not in MODES:
        raise ValueError(f"unknown sync mode {requested!r}: use one of {', '.join(MODES)}")
    if not isinstance(source, IncrementalSource):
        return "full"
    if requested != "auto":
        return requested
    due = state.full_synced_at is None or now - state.full_synced_at >= full_every
    return "full" if due else "incremental"


def sync_documents(
    kb: KnowledgeBase,
    objects: ObjectStore,
    container: Container,
    source: Source,
    *,
    mode: str = "auto",
    full_every: timedelta = FULL_EVERY,
    allow_empty_source: bool = False,
    max_archive_fraction: float = 0.5,
    batch_size: int = 200,
    log: logging.Logger = _log,
) -> DocumentSyncReport:
    saved = kb.source_state(container.id)
    mode = choose_mode(source, mode, saved, utcnow(), full_every)
    source.check()
    report = DocumentSyncReport(mode=mode)
    active_before = kb.count_documents(container.id)["active"]
    seen = _SeenKeys()
    unidentified = 0
    pending: list[DocumentWrite] = []
    reactivate: list[str] = []
    refields: dict[str, dict[str, str]] = {}  # document id -> new fields, nothing else changed
    progress = Progress(log)

    def flush(existing: dict[str, DocumentState]) -> None:
        if pending:
            kb.write_documents(container.id, pending, existing)
            pending.clear()
        if refields:
            kb.update_document_fields(container.id, refields)
            refields.clear()
        if reactivate:
            kb.set_document_status(reactivate, "active")
            reactivate.clear()

    if isinstance(source, IncrementalSource):
        records = source.read_changes(saved.state, kb.document_updated_at(container.id), full=mode == "full")
    else:
        records = source.read()
    for group in _groups(records, batch_size):
        # The states of this group's documents only: memory stays flat however many the source has.
        existing = kb.document_states(container.id, keys={r.key for r in group if r.key is not None})
        for record in group:
            _sync_record(record, existing, source, objects, report, seen, pending, reactivate, refields, log)
            unidentified += isinstance(record, SourceSkip) and record.key is None
        flush(existing)
        progress("documents: %d read so far", seen.count)
    incremental_source = isinstance(source, IncrementalSource)
    if incremental_source:  # the documents it describes are committed
        report.state = source.next_state or {}
        kb.save_source_state(container.id, report.state)
    if mode == "incremental":
        return report

    gone = [
        doc_id
        for page in kb.active_document_keys(container.id)
        for (doc_id, _), unseen in zip(page, seen.lacks([key for _, key in page]))
        if unseen
    ]
    if not seen.count and active_before and not allow_empty_source:
        raise ArchiveRefused(
            f"source {source.spec} returned no documents, but container {container.slug!r} has "
            f"{active_before} active: refusing to archive them all. If the source really is "
            "empty now, run again with --allow-empty-source / allow_empty_source: true"
        )
    if gone and unidentified:
        report.archive_withheld = (
            f"{unidentified} source record(s) could not be identified, so {len(gone)} missing "
            "document(s) were not archived; fix the records and sync again"
        )
        log.warning(report.archive_withheld)
        return report
    if gone and active_before and len(gone) > max_archive_fraction * active_before and seen.count:
        raise ArchiveRefused(
            f"source {source.spec} no longer has {len(gone)} of {active_before} active documents "
            f"of container {container.slug!r}, more than max_archive_fraction="
            f"{max_archive_fraction:g}: refusing to archive them (part of the source unmounted?). "
            "Other changes were applied. If the removal is real, run again with a higher "
            "--max-archive-fraction / max_archive_fraction (1 allows any share)"
        )
    kb.set_document_status(gone, "archived")
    report.archived = len(gone)
    if incremental_source:  # only now is the full pass done: a refused or withheld one is still due
        kb.record_full_pass(container.id)
    return report


def _sync_record(record, existing, source, objects, report, seen, pending, reactivate, refields, log) -> None:
    """One source record against its document's state: skipped, reactivated, or a write queued
    (of its fields alone, if only they changed)."""
    if isinstance(record, SourceUnchanged):
        seen.add(record.key)
        _unchanged(existing.get(record.key), report, reactivate)
        return
    if isinstance(record, SourceSkip):
        _fail(report, record.key, record.reason, log)
        if record.key is not None:
            seen.add(record.key)
        return
    seen.add(record.key)
    if len(record.raw) > source.max_document_bytes:  # every source stops reading there; this holds for all
        _fail(report, record.key, too_large(source.max_document_bytes, len(record.raw)), log)
        return
    state = existing.get(record.key)
    raw_sha = sha256_hex(record.raw)
    new_source_hash = source_hash(record.uri, raw_sha)
    if state is not None and state.source_hash == new_source_hash:
        if state.fields != dict(record.fields):
            refields[state.id] = dict(record.fields)
        _unchanged(state, report, reactivate)
        return
    try:
        extracted = record.extract()
    except UnreadableDocument as exc:
        _fail(report, record.key, str(exc), log)
        return
    new_content_hash = content_hash(extracted.title, record.uri, extracted.text)
    objects.put_blob(raw_sha, record.raw)
    pending.append(
        DocumentWrite(
            source_key=record.key,
            title=extracted.title,
            uri=record.uri,
            raw_sha256=raw_sha,
            source_hash=new_source_hash,
            content_hash=new_content_hash,
            text=extracted.text,
            source_updated_at=record.updated_at,
            fields=dict(record.fields),
        )
    )
    _count_write(report, state, new_content_hash)


def _unchanged(state: DocumentState | None, report: DocumentSyncReport, reactivate: list[str]) -> None:
    """A record whose bytes did not change: its document is reactivated if archived, else skipped."""
    if state is not None and state.status == "archived":
        reactivate.append(state.id)
        report.unarchived += 1
    else:
        report.skipped += 1


_GROUP_BYTES = 16 * 1024 * 1024


def _groups(records: Iterable, size: int) -> Iterator[list]:
    """Records ``size`` at a time, a group closed early past ``_GROUP_BYTES`` of raw bytes."""
    group, held = [], 0
    for record in records:
        group.append(record)
        held += len(getattr(record, "raw", b""))
        if len(group) >= size or held >= _GROUP_BYTES:
            yield group
            group, held = [], 0
    if group:
        yield group


class _SeenKeys:
    """The source keys a pass saw, as 8-byte digests in numpy arrays: 8 bytes a key, where a set
    of a million keys costs about 60 MB as strings and 70 as Python ints (a collision would keep
    a vanished document active, never archive one that exists)."""

    _BLOCK = 1 << 16

    def __init__(self):
        self._pending: list[int] = []
        self._blocks: list[np.ndarray] = []
        self._sorted: np.ndarray | None = None  # the blocks merged, once the pass is over
        self.count = 0  # keys added (a key read twice counts twice)

    @staticmethod
    def _digest(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")

    def add(self, key: str) -> None:
        self._pending.append(self._digest(key))
        self.count += 1
        if len(self._pending) >= self._BLOCK:
            self._seal()

    def lacks(self, keys: list[str]) -> np.ndarray:
        """For each of ``keys``, whether the pass did not see it (call once the pass is over)."""
        self._seal()
        if self._sorted is None:
            self._sorted = np.unique(np.concatenate(self._blocks)) if self._blocks else np.zeros(0, dtype=np.uint64)
            self._blocks = []
        return ~contains(self._sorted, np.array([self._digest(k) for k in keys], dtype=np.uint64))

    def _seal(self) -> None:
        if self._pending:
            self._blocks.append(np.array(self._pending, dtype=np.uint64))
            self._pending = []


def _fail(report: DocumentSyncReport, key: str | None, reason: str, log: logging.Logger) -> None:
    """A record that was not read: counted as failed and named; its document keeps its state."""
    report.failed += 1
    report.failures.append((key or "(unidentified record)", reason))
    log.warning("skipped %s: %s", key or "a record", reason)


def _count_write(report: DocumentSyncReport, state: DocumentState | None, new_content_hash: str) -> None:
    if state is None:
        report.inserted += 1
    elif state.status == "archived":
        report.unarchived += 1
    elif state.content_hash == new_content_hash:
        report.skipped += 1  # bytes changed, retrievable content did not (e.g. a script tag)
    else:
        report.updated += 1
