"""Write a container archive, streamed: rows go from one consistent DB snapshot into staged
member files (hashed as they are written), then into the archive behind the manifest; blobs go
straight from the object store into the archive, their sha256 checked on the way. Memory stays
flat in the container size; disk needs the archive plus its JSONL and vectors once more."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ops_pipelines.archives.format import (
    BLOB_PREFIX,
    CHUNKS,
    DOCUMENTS,
    FORMAT,
    FORMAT_VERSION,
    FORMATS,
    MANIFEST,
    VECTORS,
    ArchiveError,
)
from ops_pipelines.chunking import CHUNKER_VERSION
from ops_pipelines.embedders import get_version
from ops_pipelines.kb import Container, KnowledgeBase
from ops_pipelines.objects import ObjectStore, blob_key
from ops_pipelines.objects.base import ObjectNotFound

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiveReport:
    path: Path
    format: str
    size: int
    sha256: str
    manifest: dict

    @property
    def counts(self) -> dict:
        return self.manifest["counts"]


class _HashingWriter:
    """A file that counts and sha256-hashes what is written to it."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.handle, self.digest, self.size = path, open(path, "wb"), hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)

    def close(self) -> dict:
        self.handle.close()
        return {"size": self.size, "sha256": self.digest.hexdigest()}


def write_archive(
    kb: KnowledgeBase,
    objects: ObjectStore,
    container: Container,
    out_path: str | os.PathLike,
    fmt: str = "tar",
    include_vectors: bool = True,
    include_blobs: bool = True,
    run_id: str = "",
    log: logging.Logger = _log,
) -> ArchiveReport:
    if fmt not in FORMATS:
        raise ArchiveError(f"unknown archive format {fmt!r}: use one of {', '.join(FORMATS)}")
    out_path = Path(out_path)
    version = get_version(container.embedder_version)
    created_at = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".staging-") as tmp:
        staging = Path(tmp)
        members: dict[str, dict] = {}
        with kb.snapshot(container.id) as snap:
            counts = {"documents": snap.count("documents"), "chunks": snap.count("chunks")}
            members[DOCUMENTS] = _write_documents(snap, staging / DOCUMENTS)
            log.info("archive: %d documents staged", counts["documents"])
            vectors = _VectorsWriter(staging / VECTORS, counts["chunks"], version.dimension) if include_vectors else None
            members[CHUNKS] = _write_chunks(snap, staging / CHUNKS, vectors, version.name, container.slug)
            if vectors is not None:
                members[VECTORS] = vectors.close()
                counts["vectors"] = counts["chunks"]
            log.info("archive: %d chunks staged%s", counts["chunks"], " with vectors" if vectors else "")
            if include_blobs:
                blobs = _blob_members(snap.blob_hashes(), objects, container.slug)
                members.update(blobs)
                counts["blobs"] = len(blobs)
                log.info("archive: %d blobs staged", len(blobs))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": created_at.isoformat(),
            "run_id": run_id,
            "container": {
                "id": container.id,
                "slug": container.slug,
                "source_kind": container.source_kind,
                "source_location": container.source_location,
                "embedder_version": container.embedder_version,
            },
            "embedder": {"version": version.name, "dimension": version.dimension, "chunker": CHUNKER_VERSION},
            "options": {"include_vectors": include_vectors, "include_blobs": include_blobs},
            "counts": counts,
            "members": [{"name": name, **facts} for name, facts in members.items()],
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        partial = out_path.with_name(out_path.name + ".partial")
        try:
            (_write_tar if fmt == "tar" else _write_zip)(
                partial, _Sources(staging, objects, members), [MANIFEST, *members], created_at
            )
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, out_path)
    size, sha = _file_digest(out_path)
    log.info("archive: %s written, %d bytes, sha256 %s", out_path.name, size, sha)
    return ArchiveReport(out_path, fmt, size, sha, manifest)


def _write_documents(snap, path: Path) -> dict:
    out = _HashingWriter(path)
    for row in snap.documents():
        record = dict(row._mapping)
        updated = record["source_updated_at"]
        record["source_updated_at"] = updated.isoformat() if updated else None
        out.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
    return out.close()


class _VectorsWriter:
    """A .npy file written row batch by row batch; the header fixes the shape up front."""

    def __init__(self, path: Path, rows: int, dimension: int):
        self.rows, self.dimension, self.written = rows, dimension, 0
        self.row_bytes = 4 * dimension
        self.out = _HashingWriter(path)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": (rows, dimension)}
        )
        self.out.write(header.getvalue())

    def write_row(self, vector: bytes | None, chunk_hash: str, version: str, slug: str) -> None:
        """One row, as the cache stores it (float32 little-endian bytes)."""
        if vector is None:
            raise ArchiveError(
                f"chunk {chunk_hash} of {slug!r} has no {version} vector in the embedding cache: run "
                "sync_job for the container first, or export with include_vectors false"
            )
        if len(vector) != self.row_bytes:
            raise ArchiveError(f"the cached {version} vector of chunk {chunk_hash} is not {self.dimension}-d")
        self.out.write(vector)
        self.written += 1

    def close(self) -> dict:
        if self.written != self.rows:
            raise ArchiveError(f"vectors: wrote {self.written} rows for {self.rows} chunks")
        return self.out.close()


def _write_chunks(snap, path: Path, vectors: _VectorsWriter | None, version: str, slug: str) -> dict:
    out = _HashingWriter(path)
    fields = ("document_id", "source_key", "ordinal", "content_hash", "text")
    for row in snap.chunks(version if vectors is not None else None):
        out.write(json.dumps(dict(zip(fields, row[: len(fields)], strict=True)), ensure_ascii=False).encode() + b"\n")
        if vectors is not None:
            vectors.write_row(row.vector, row.content_hash, version, slug)
    return out.close()


def _blob_members(hashes, objects: ObjectStore, slug: str) -> dict[str, dict]:
    """Manifest entries of the blobs: content-addressed, so the name is the sha256 (checked
    when the bytes are copied into the archive)."""
    members = {}
    for sha in hashes:
        try:
            members[f"{BLOB_PREFIX}{sha}"] = {"size": objects.size(blob_key(sha)), "sha256": sha}
        except ObjectNotFound:
            raise ArchiveError(
                f"blob {sha} of a document of {slug!r} is missing from the object store: put it back "
                f"at {blob_key(sha)} (from a backup or another copy), or export with include_blobs false"
            ) from None
    return members


class _Sources:
    """Opens each member for reading: a staged file, or a blob in the object store whose bytes
    are hashed as they are read and checked when it is closed."""

    def __init__(self, staging: Path, objects: ObjectStore, members: dict[str, dict]):
        self.staging, self.objects, self.members = staging, objects, members

    @contextmanager
    def open(self, name: str):
        if not name.startswith(BLOB_PREFIX):
            with open(self.staging / name, "rb") as handle:
                yield handle
            return
        sha = name.removeprefix(BLOB_PREFIX)
        with self.objects.reader(blob_key(sha)) as stream:
            hashing = _HashingReader(stream)
            yield hashing
        if hashing.digest.hexdigest() != sha or hashing.size != self.members[name]["size"]:
            raise ArchiveError(f"blob {sha} in the object store is corrupt or changed while exporting")

    def size(self, name: str) -> int:
        return self.members[name]["size"] if name in self.members else (self.staging / name).stat().st_size


class _HashingReader:
    def __init__(self, stream):
        self.stream, self.digest, self.size = stream, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


def _write_tar(path: Path, sources: _Sources, names: list[str], created_at: datetime) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = sources.size(name)
            info.mtime = int(created_at.timestamp())
            info.mode = 0o644
            with sources.open(name) as handle:
                tar.addfile(info, handle)


def _write_zip(path: Path, sources: _Sources, names: list[str], created_at: datetime) -> None:
    stamp = created_at.timetuple()[:6]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.external_attr = 0o100644 << 16
            with sources.open(name) as source, archive.open(info, "w", force_zip64=True) as target:
                shutil.copyfileobj(source, target, 1 << 20)


def _file_digest(path: Path) -> tuple[int, str]:
    with open(path, "rb") as handle:
        return path.stat().st_size, hashlib.file_digest(handle, "sha256").hexdigest()
