"""Create a container from a verified archive, all or nothing.

Every record is validated before the first write (JSON shapes, chunk hashes recomputed, chunk
order, vectors' shape and values, counts against the manifest), so a bad archive changes
nothing. Then the container is written, its vectors cached (or embedded when the archive has
none for the target version), a generation built, checked by the same reconciliation checks as
a refresh, and put behind the alias. ``force`` replaces an existing container of the same slug
without a gap: the old one is parked under another slug and keeps serving until the new one
passes its checks and the alias moves; a failure puts it back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ops_pipelines.archives.format import (
    CHUNK_FIELDS,
    CHUNKS,
    DOCUMENT_FIELDS,
    DOCUMENTS,
    VECTORS,
    ArchiveError,
    check_registered_dimension,
)
from ops_pipelines.archives.reader import VerifiedArchive
from ops_pipelines.chunking import chunk_hash
from ops_pipelines.embedders import Embedder, get_version
from ops_pipelines.ingest import build_index, embed_chunks, fill_collection
from ops_pipelines.kb import Container, ContainerNotFound, DocumentWrite, KnowledgeBase
from ops_pipelines.kb.store import SLUG_PATTERN
from ops_pipelines.objects import ObjectStore, blob_key
from ops_pipelines.refresh import reconcile_generation, swap_to
from ops_pipelines.vectors import VectorStore, generation_name
from ops_pipelines.vectors.reconcile import CheckResult
from ops_pipelines.vectors.serving import served_collections

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
    log: logging.Logger = _log,
) -> ImportReport:
    manifest = archive.manifest
    slug = slug or manifest["container"].get("slug", "")
    if not isinstance(slug, str) or not SLUG_PATTERN.match(slug):
        raise ImportRefused(f"invalid container slug {slug!r}: pass a valid slug to import under")
    source_version = manifest["embedder"]["version"]
    target = get_version(embedder_version or source_version)
    if target.name == source_version:  # the archive's vectors count: its manifest must be true here
        check_registered_dimension(manifest)
    with_vectors = bool(manifest["options"].get("include_vectors")) and target.name == source_version
    counts = _validate(archive, with_vectors, target.dimension)
    log.info("import: archive valid: %d documents, %d chunks", counts["documents"], counts["chunks"])

    try:
        existing = kb.get_container(slug)
    except ContainerNotFound:
        existing = None
    if existing is not None and not force:
        raise ImportRefused(
            f"container {slug!r} already exists: import under another slug, or with force to replace it"
        )
    parked = _park(kb, existing) if existing else None
    origin = manifest["container"]
    container = kb.add_container(slug, origin["source_kind"], origin["source_location"], target.name)
    try:
        report = _write(kb, objects, store, archive, container, target, with_vectors, counts, parked, load_embedder, log)
    except BaseException:
        _discard(kb, store, container)
        if parked is not None:
            kb.rename_container(parked.id, slug)
        raise
    if parked is not None:
        _discard(kb, store, parked)
        log.info("import: replaced the previous %s", slug)
    return report


def _write(kb, objects, store, archive, container, target, with_vectors, counts, parked, load_embedder, log):
    blobs = 0
    for name in (m["name"] for m in archive.manifest["members"]):
        if name.startswith("blobs/"):
            sha = name.removeprefix("blobs/")
            if not objects.exists(blob_key(sha)):
                objects.put_file(blob_key(sha), archive.member(name))
            blobs += 1
    for batch in _batches(_records(archive, DOCUMENTS), _BATCH):
        kb.write_documents(container.id, [_document(r) for r in batch], {})
    documents = kb.document_states(container.id)
    vectors = np.load(archive.member(VECTORS), mmap_mode="r") if with_vectors else None
    row = 0
    for batch in _document_batches(_records(archive, CHUNKS), _BATCH):
        # Whole documents per batch: replace_chunks swaps all of a document's chunks at once.
        kb.replace_chunks(
            [
                (documents[key].id, documents[key].content_hash, [(r["content_hash"], r["text"]) for r in rows])
                for key, rows in batch
            ]
        )
        hashes = [r["content_hash"] for _, rows in batch for r in rows]
        if vectors is not None:
            kb.put_archive_vectors(container.id, target.name, hashes, np.asarray(vectors[row : row + len(hashes)]))
        row += len(hashes)
    written = {"documents": kb.count_documents(container.id)["active"], "chunks": kb.count_active_chunks(container.id)}
    if written != counts:
        raise ArchiveError(f"the import wrote {written}, the archive holds {counts}: nothing kept")
    log.info("import: %d documents, %d chunks, %d blobs written", counts["documents"], counts["chunks"], blobs)
    embedded = embed_chunks(kb, container, load_embedder, target.name, log=log).computed
    first = 1 + max((g.number for g in kb.generations(parked.id)), default=0) if parked else 1
    generation, _ = kb.open_generation(
        container.id, target.name, lambda n: generation_name(container.slug, target.name, n), first_number=first
    )
    store.ensure_collection(generation.collection, target.dimension)
    fill_collection(kb, store, container, generation.collection, target.name, log=log)
    build_index(store, generation.collection, log)
    checks = reconcile_generation(kb, store, container, generation)
    failed = [c for c in checks if not c.passed]
    if failed:
        raise ArchiveError("the imported container failed its checks: " + "; ".join(f"{c.name}: {c.summary}" for c in failed))
    swap_to(kb, store, container, generation, retention=None, log=log)
    return ImportReport(
        container=kb.get_container(container.id),
        documents=counts["documents"],
        chunks=counts["chunks"],
        vectors_from_archive=with_vectors,
        embedded=embedded,
        blobs=blobs,
        collection=generation.collection,
        replaced=parked is not None,
        checks=checks,
    )


def _validate(archive: VerifiedArchive, with_vectors: bool, dimension: int) -> dict[str, int]:
    """Everything the import will write, checked first; returns the counts."""
    manifest = archive.manifest
    for key in ("source_kind", "source_location"):
        if not isinstance(manifest["container"].get(key), str):
            raise ArchiveError(f"the manifest's container lacks {key!r}")
    for member in manifest["members"]:
        # Blobs land in the shared content-addressed store: the name must be the content's hash.
        if member["name"].startswith("blobs/") and member["name"] != f"blobs/{member['sha256']}":
            raise ArchiveError(f"member {member['name']} does not hold the bytes its name promises")
    keys: set[str] = set()
    documents = 0
    for record in _records(archive, DOCUMENTS):
        _check_fields(record, DOCUMENT_FIELDS, DOCUMENTS, documents)
        if record["source_key"] in keys:
            raise ArchiveError(f"{DOCUMENTS} line {documents + 1}: source_key {record['source_key']!r} repeats")
        keys.add(record["source_key"])
        documents += 1
    chunks, previous = 0, None
    for record in _records(archive, CHUNKS):
        _check_fields(record, CHUNK_FIELDS, CHUNKS, chunks)
        where = f"{CHUNKS} line {chunks + 1}"
        if record["source_key"] not in keys:
            raise ArchiveError(f"{where}: no document has source_key {record['source_key']!r}")
        expected_ordinal = previous[1] + 1 if previous and previous[0] == record["source_key"] else 0
        if record["ordinal"] != expected_ordinal:
            raise ArchiveError(f"{where}: ordinal {record['ordinal']}, expected {expected_ordinal}")
        if chunk_hash(record["text"]) != record["content_hash"]:
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
    return {"documents": documents, "chunks": chunks}


def _check_vectors(archive: VerifiedArchive, rows: int, dimension: int) -> None:
    try:
        vectors = np.load(archive.member(VECTORS), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"{VECTORS} is not a float32 .npy array: {exc}") from exc
    if vectors.dtype != np.dtype("<f4") or vectors.shape != (rows, dimension):
        raise ArchiveError(f"{VECTORS} is {vectors.dtype} {vectors.shape}, expected float32 ({rows}, {dimension})")
    for start in range(0, rows, 4096):
        block = np.asarray(vectors[start : start + 4096])
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
    )


def _park(kb: KnowledgeBase, container: Container) -> Container:
    """Move the container being replaced out of its slug; its alias keeps serving it."""
    parked_slug = f"{container.slug[:40]}-replaced-{int(time.time())}"
    kb.rename_container(container.id, parked_slug)
    return kb.get_container(container.id)


def _discard(kb: KnowledgeBase, store: VectorStore, container: Container) -> None:
    """Drop a container's collections (never one an alias serves) and its records."""
    serving = served_collections(kb, store, excluding=container)
    for generation in kb.generations(container.id):
        if generation.collection not in serving:
            store.drop_collection(generation.collection)
    kb.delete_container(container.id)
