"""Create a container from a verified archive, all or nothing, and finish or undo by running again.

Every record is validated before the first write (JSON shapes, chunk hashes recomputed, chunk
order, vectors' shape and values, counts against the manifest), so a bad archive changes
nothing. Then the container is written under a temporary slug (state ``importing``): its
documents and chunks, the archive's vectors kept for it alone (``kb.schema.archive_vectors``:
nothing enters the shared embedding cache that this deployment did not compute), whatever lacks
a vector embedded, a generation built and checked by the same reconciliation checks as a
refresh; its golden set versions are recorded as they were. Only then, in one transaction, does
it take its slug, and a container it replaces
(``force``) step aside, ``parked``; the alias moves, and the parked container is removed.

Until that transaction the replaced container is untouched and serves; a failure removes what
the import wrote. A killed import leaves an ``importing`` container (or, killed after the
transaction, a ``parked`` one): both are listed, removable with ``container remove``, and the
next import into the same slug removes them first. Generation collections are named after the
slug, numbered past every name any container's records hold (``kb.generations``), so the new
container never takes a name the one it replaces still uses.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ops_pipelines.archives.format import (
    CHUNK_FIELDS,
    CHUNKS,
    DOCUMENT_FIELDS,
    DOCUMENTS,
    GOLDEN_SET_FIELDS,
    GOLDEN_SETS,
    VECTORS,
    ArchiveError,
    archive_chunker,
    check_registered_dimension,
)
from ops_pipelines.archives.npy import Rows
from ops_pipelines.archives.reader import VerifiedArchive
from ops_pipelines.chunking import chunk_hash
from ops_pipelines.containers import drop_container, settle_replacement
from ops_pipelines.embedders import Embedder, chunker_of, get_version
from ops_pipelines.ingest import chunk_documents, embed_chunks, fill_collection
from ops_pipelines.kb import (
    IMPORTING,
    READY,
    Container,
    ContainerExists,
    ContainerNotFound,
    DocumentWrite,
    KnowledgeBase,
    holder_for,
)
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.kb.golden_sets import QualityBounds
from ops_pipelines.kb.store import SLUG_PATTERN
from ops_pipelines.objects import ObjectStore, blob_key
from ops_pipelines.quality.golden import InvalidGoldenSet, parse_golden_set
from ops_pipelines.refresh import reconcile_generation
from ops_pipelines.sources import SOURCE_KINDS
from ops_pipelines.vectors import VectorStore, generation_name
from ops_pipelines.vectors.reconcile import CheckResult
from ops_pipelines.vectors.serving import publish

_log = logging.getLogger(__name__)
_BATCH = 500


class ImportRefused(ArchiveError):
    pass


@dataclass
class ImportReport:
    container: Container
    documents: int
    chunks: int
    vectors_from_archive: bool
    embedded: int
    blobs: int
    collection: str
    replaced: bool
    checks: list[CheckResult] = field(default_factory=list)


def import_archive(
    kb: KnowledgeBase,
    objects: ObjectStore,
    store: VectorStore,
    archive: VerifiedArchive,
    load_embedder: Callable[[str], Embedder],
    slug: str | None = None,
    force: bool = False,
    embedder_version: str | None = None,
    holder: str | None = None,
    log: logging.Logger = _log,
) -> ImportReport:
    """Import under ``slug`` (default: the archive's), holding the leases of the containers it
    writes or removes as ``holder`` (default: this process)."""
    manifest = archive.manifest
    slug = slug or manifest["container"].get("slug", "")
    if not isinstance(slug, str) or not SLUG_PATTERN.match(slug):
        raise ImportRefused(f"invalid container slug {slug!r}: pass a valid slug to import under (--slug / slug)")
    source_version = manifest["embedder"]["version"]
    target = get_version(embedder_version or source_version)
    if target.name == source_version:  # the archive's vectors count: its manifest must be true here
        check_registered_dimension(manifest)
    with_vectors = bool(manifest["options"].get("include_vectors")) and target.name == source_version
    counts = _validate(archive, with_vectors, target.dimension)
    log.info("import: archive valid: %d documents, %d chunks", counts["documents"], counts["chunks"])

    holder = holder or holder_for(None)
    with ExitStack() as leases:
        existing = _ready_at(kb, slug)
        if existing is not None:
            if not force:
                raise ImportRefused(
                    f"container {slug!r} already exists: import under another slug (--slug / slug), or with "
                    "--force / force: true to replace it"
                )
            leases.enter_context(kb.container_lease(existing.id, holder))
            if getattr(_ready_at(kb, slug), "id", None) != existing.id:
                raise ImportRefused(f"container {slug!r} changed while the import waited for it: run the import again")
        _remove_unfinished_imports(kb, store, slug, holder, log)
        new_id = str(uuid.uuid4())
        leases.enter_context(kb.container_lease(new_id, holder))
        origin = manifest["container"]
        container = kb.add_container(
            f"{slug[:40]}-importing-{new_id[:8]}", origin["source_kind"], origin["source_location"], target.name,
            container_id=new_id, state=IMPORTING, import_slug=slug, declared_fields=origin.get("declared_fields") or (),
        )
        try:
            report = _write(kb, objects, store, archive, container, target, with_vectors, counts, load_embedder, log)
            parked = kb.complete_import(container.id, existing.id if existing else None)
        except BaseException as failure:
            _undo(kb, store, container, log)
            if isinstance(failure, ContainerExists):
                raise ImportRefused(str(failure)) from None
            raise
        report.container = kb.get_container(container.id)
        publish(store, report.container, report.collection)
        log.info("import: %s serves %s", report.container.slug, report.collection)
        if parked is not None:
            drop_container(kb, store, parked, log)
            report.replaced = True
            log.info("import: replaced the previous %s (parked as %s, now removed)", slug, parked.slug)
    return report


def _ready_at(kb: KnowledgeBase, slug: str) -> Container | None:
    """The container at ``slug``; ``ImportRefused`` if that one is an import's or parked by one."""
    try:
        container = kb.get_container(slug)
    except ContainerNotFound:
        return None
    if container.state != READY:
        raise ImportRefused(
            f"{slug!r} is the slug of a container in state {container.state} (see ops-pipelines container list): "
            f"import under another slug, or remove it first with ops-pipelines container remove {slug}"
        )
    return container


def _remove_unfinished_imports(kb: KnowledgeBase, store: VectorStore, slug: str, holder: str, log) -> None:
    """Remove what earlier imports into ``slug`` left when killed: a container they were writing
    (after waiting for its lease: it may be another import, still running), or one they replaced
    and parked (its replacement's alias settled first)."""
    for leftover in kb.list_containers(every_state=True):
        if leftover.state == READY or leftover.import_slug != slug:
            continue
        with kb.container_lease(leftover.id, holder):
            try:
                leftover = kb.get_container(leftover.id)
            except ContainerNotFound:
                continue
            settle_replacement(kb, store, leftover, holder)
            drop_container(kb, store, leftover, log)
        log.warning("import: removed %s (%s), left by an import into %s that did not finish", leftover.slug, leftover.state, slug)


def _undo(kb: KnowledgeBase, store: VectorStore, container: Container, log) -> None:
    """Remove the container a failed import wrote; a failure here is logged, not raised over the
    import's own (the next import into the slug removes what is left)."""
    try:
        drop_container(kb, store, container, log)
    except Exception:  # noqa: BLE001 - the import's failure is the one to report
        log.exception("import: could not remove %s after the failure; the next import into %s will", container.slug, container.import_slug)


def _write(kb, objects, store, archive, container, target, with_vectors, counts, load_embedder, log) -> ImportReport:
    """Everything of the container, up to its generation checked and recorded live (nothing
    serves it yet: it is not at its slug)."""
    blobs = 0
    for sha, path in archive.extracted_blobs():
        if not objects.exists(blob_key(sha)):
            objects.move_file(blob_key(sha), path)
        blobs += 1
    for batch in _batches(_records(archive, DOCUMENTS), _BATCH):
        kb.write_documents(container.id, [_document(r) for r in batch], {})
    for record in _golden_sets(archive):  # oldest first: the newest is the one in use
        kb.put_golden_set(
            container.id, record["content_hash"], record["body"], record["queries"],
            created_at=datetime.fromisoformat(record["created_at"]),
        )
    kb.set_quality_bounds(container.id, _quality_bounds(archive.manifest["container"]))
    with Rows(archive.member(VECTORS), VECTORS) if with_vectors else nullcontext() as vectors:
        _write_chunks(kb, archive, container, target, vectors)
    cut_by = archive_chunker(archive.manifest)
    written = {"documents": kb.count_documents(container.id)["active"], "chunks": kb.count_active_chunks(container.id, cut_by)}
    if written != counts:
        raise ArchiveError(f"the import wrote {written}, the archive holds {counts}: nothing kept")
    log.info("import: %d documents, %d chunks, %d blobs written", counts["documents"], counts["chunks"], blobs)
    if target.chunker != cut_by:  # re-embedding under a version with its own chunker: its chunks first
        chunk_documents(kb, container, chunker_of(target.name), log=log)
    embedded = embed_chunks(kb, container, load_embedder, target.name, log=log).computed
    generation, _ = kb.open_generation(
        container.id, target.name, lambda n: generation_name(container.import_slug, target.name, n),
        exists=lambda name: store.collection_dimension(name) is not None,
    )
    store.ensure_collection(generation.collection, target.dimension, target.hybrid)
    fill_collection(kb, store, container, generation.collection, target.name, log=log)
    checks = reconcile_generation(kb, store, container, generation)
    failed = [c for c in checks if not c.passed]
    if failed:
        raise ArchiveError("the imported container failed its checks: " + "; ".join(f"{c.name}: {c.summary}" for c in failed))
    kb.activate_generation(container.id, generation.number)
    if (synced := content_synced_at(archive.manifest)) is not None:
        kb.mark_synced(container.id, at=synced)
    return ImportReport(
        container=container,
        documents=counts["documents"],
        chunks=counts["chunks"],
        vectors_from_archive=with_vectors,
        embedded=embedded,
        blobs=blobs,
        collection=generation.collection,
        replaced=False,
        checks=checks,
    )


def _write_chunks(kb: KnowledgeBase, archive: VerifiedArchive, container: Container, target, vectors: Rows | None) -> None:
    """The chunks of chunks.jsonl, under the chunker that cut them, whole documents a batch at a
    time (replace_chunks swaps all of a document's chunks at once), with their rows of
    vectors.npy if given."""
    cut_by = archive_chunker(archive.manifest)
    for batch in _document_batches(_records(archive, CHUNKS), _BATCH):
        documents = kb.document_states(container.id, keys=[key for key, _ in batch])  # this batch's only
        kb.replace_chunks(
            cut_by,
            [
                (documents[key].id, documents[key].content_hash, [(r["content_hash"], r["text"]) for r in rows])
                for key, rows in batch
            ]
        )
        if vectors is not None:
            hashes = [r["content_hash"] for _, rows in batch for r in rows]
            kb.put_archive_vectors(container.id, target.name, hashes, vectors.next(len(hashes)))


def content_synced_at(manifest: dict) -> datetime | None:
    """When the archived content was last in step with its source: the exported container's sync
    time, never later than the export itself; None if the archive does not say (exports made
    before the manifest recorded it, or a container never synced)."""
    try:
        synced = datetime.fromisoformat(manifest["container"]["last_synced_at"])
        created = datetime.fromisoformat(manifest["created_at"])
    except (KeyError, TypeError, ValueError):
        return None
    if synced.tzinfo is None or created.tzinfo is None:
        return None
    return min(synced, created, utcnow())


def _validate(archive: VerifiedArchive, with_vectors: bool, dimension: int) -> dict[str, int]:
    """Everything the import will write, checked first; returns the counts."""
    manifest = archive.manifest
    for key in ("source_kind", "source_location"):
        if not isinstance(manifest["container"].get(key), str):
            raise ArchiveError(f"the manifest's container lacks {key!r}")
    _check_declared_fields(manifest["container"])
    _quality_bounds(manifest["container"])
    keys: set[str] = set()
    documents = 0
    for record in _records(archive, DOCUMENTS):
        _check_fields(record, DOCUMENT_FIELDS, DOCUMENTS, documents)
        _check_document_fields(record.get("fields"), documents)
        if record["source_key"] in keys:
            raise ArchiveError(f"{DOCUMENTS} line {documents + 1}: source_key {record['source_key']!r} repeats")
        keys.add(record["source_key"])
        documents += 1
    chunks, previous, cut_by = 0, None, archive_chunker(manifest)
    for record in _records(archive, CHUNKS):
        _check_fields(record, CHUNK_FIELDS, CHUNKS, chunks)
        where = f"{CHUNKS} line {chunks + 1}"
        if record["source_key"] not in keys:
            raise ArchiveError(f"{where}: no document has source_key {record['source_key']!r}")
        expected_ordinal = previous[1] + 1 if previous and previous[0] == record["source_key"] else 0
        if record["ordinal"] != expected_ordinal:
            raise ArchiveError(f"{where}: ordinal {record['ordinal']}, expected {expected_ordinal}")
        if chunk_hash(record["text"], cut_by) != record["content_hash"]:
            raise ArchiveError(f"{where}: content_hash does not match the chunk's text")
        previous = (record["source_key"], record["ordinal"])
        chunks += 1
    declared = manifest["counts"]
    if (declared.get("documents"), declared.get("chunks")) != (documents, chunks):
        raise ArchiveError(
            f"the manifest counts {declared.get('documents')} documents and {declared.get('chunks')} chunks, "
            f"the archive holds {documents} and {chunks}"
        )
    if with_vectors:
        _check_vectors(archive, chunks, dimension)
    _check_golden_sets(archive)
    return {"documents": documents, "chunks": chunks}


def _quality_bounds(container: dict) -> QualityBounds:
    """The container's own bounds for the quality gate (none in archives before version 3)."""
    gate = container.get("quality_gate") or {}
    values = [gate.get("tolerance"), gate.get("floor")] if isinstance(gate, dict) else []
    if not values or set(gate) - {"tolerance", "floor"} or not all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1) for v in values
    ):
        raise ArchiveError("the manifest's container.quality_gate is not {tolerance, floor} of numbers from 0 to 1")
    return QualityBounds(*values)


def _check_declared_fields(container: dict) -> None:
    names = container.get("declared_fields") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ArchiveError("the manifest's container.declared_fields is not a list of field names")
    kind = SOURCE_KINDS.get(container["source_kind"])
    try:
        if kind is not None and tuple(names) != kind.declare_fields(names):
            raise ValueError("they are not sorted, or repeat")
    except ValueError as exc:
        raise ArchiveError(f"the manifest's container.declared_fields {names}: {exc}") from None


def _check_document_fields(fields, index: int) -> None:
    """A document's fields: an object of strings, or none (not known: archives before version 3,
    documents not synced since)."""
    if fields is not None and not (
        isinstance(fields, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    ):
        raise ArchiveError(f"{DOCUMENTS} line {index + 1}: fields must be an object of strings")


def _golden_sets(archive: VerifiedArchive) -> Iterator[dict]:
    """The golden set versions of golden_sets.jsonl, oldest first (none in archives before version 3)."""
    if any(m["name"] == GOLDEN_SETS for m in archive.manifest["members"]):
        yield from _records(archive, GOLDEN_SETS)


def _check_golden_sets(archive: VerifiedArchive) -> None:
    """Each version is a golden set whose hash and query count are the record's, with a time."""
    versions = 0
    for versions, record in enumerate(_golden_sets(archive), start=1):
        _check_fields(record, GOLDEN_SET_FIELDS, GOLDEN_SETS, versions - 1)
        where = f"{GOLDEN_SETS} line {versions}"
        try:
            golden = parse_golden_set(record["body"], where)
            created = datetime.fromisoformat(record["created_at"])
        except (InvalidGoldenSet, ValueError) as exc:
            raise ArchiveError(f"{where}: {exc}") from None
        if (golden.content_hash, len(golden.queries)) != (record["content_hash"], record["queries"]):
            raise ArchiveError(f"{where}: content_hash or queries do not match the set's body")
        if created.tzinfo is None:
            raise ArchiveError(f"{where}: created_at has no time zone")
    declared = archive.manifest["counts"].get("golden_sets", versions)
    if declared != versions:
        raise ArchiveError(f"the manifest counts {declared} golden set versions, {GOLDEN_SETS} holds {versions}")


def _check_vectors(archive: VerifiedArchive, rows: int, dimension: int) -> None:
    with Rows(archive.member(VECTORS), VECTORS) as vectors:
        if vectors.dtype != np.dtype("<f4") or vectors.shape != (rows, dimension):
            raise ArchiveError(f"{VECTORS} is {vectors.dtype} {vectors.shape}, expected float32 ({rows}, {dimension})")
        for start in range(0, rows, 4096):
            block = vectors.next(min(4096, rows - start))
            if not np.isfinite(block).all() or (np.linalg.norm(block, axis=1) == 0).any():
                raise ArchiveError(f"{VECTORS} holds NaN, infinite or zero vectors (rows {start}-{start + len(block) - 1})")


def _check_fields(record, fields: dict, member: str, index: int) -> None:
    if not isinstance(record, dict):
        raise ArchiveError(f"{member} line {index + 1} is not a JSON object")
    for name, kind in fields.items():
        if not isinstance(record.get(name), kind) or isinstance(record.get(name), bool):
            raise ArchiveError(f"{member} line {index + 1}: field {name!r} is missing or has the wrong type")


def _records(archive: VerifiedArchive, member: str) -> Iterator:
    with open(archive.member(member), encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise ArchiveError(f"{member} line {number} is not valid JSON: {exc}") from exc


def _document_batches(records: Iterator[dict], size: int) -> Iterator[list[tuple[str, list[dict]]]]:
    """(source key, its chunk records) groups, about ``size`` chunks per batch, never splitting
    a document (the records come ordered by source key and ordinal)."""
    batch: list[tuple[str, list[dict]]] = []
    count = 0
    for record in records:
        if not batch or batch[-1][0] != record["source_key"]:
            if count >= size:
                yield batch
                batch, count = [], 0
            batch.append((record["source_key"], []))
        batch[-1][1].append(record)
        count += 1
    if batch:
        yield batch


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _document(record: dict) -> DocumentWrite:
    updated = record["source_updated_at"]
    return DocumentWrite(
        source_key=record["source_key"],
        title=record["title"],
        uri=record["uri"],
        raw_sha256=record["raw_sha256"],
        source_hash=record["source_hash"],
        content_hash=record["content_hash"],
        text=record["text"],
        source_updated_at=datetime.fromisoformat(updated) if updated else None,
        fields=record.get("fields"),
    )
