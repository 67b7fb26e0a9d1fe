"""The container archive, format version 3 (documented in docs/export.md, "The archive format").

A tar (POSIX pax, uncompressed) or zip (stored, zip64) whose first member is ``manifest.json``:

    manifest.json     format, format_version, created_at, run_id, container (with its
                      declared_fields and its quality_gate bounds if it has its own),
                      embedder, options, counts, members: [{name, size,
                      sha256}] for every other member but the blobs, and blobs: {count, bytes}
    documents.jsonl   one JSON object per active document (with its fields)
    chunks.jsonl      one JSON object per active chunk, ordered by (source_key, ordinal)
    golden_sets.jsonl one JSON object per version of the container's golden set, oldest first
    vectors.npy       optional: float32 (chunks x dimension), row i = line i of chunks.jsonl
    blobs/<sha256>    optional: the raw bytes each document was read from, after the other
                      members, in ascending name order

Blobs are counted, not listed: a blob's name is its sha256, so it needs no manifest entry to be
verified, and a list of them (one per document) was the one part of a manifest that grew with
the container. Version 1 listed them; version 2 had no document fields, declared fields nor
golden sets. Both are still read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ops_pipelines.errors import OperatorError

FORMAT = "ops-pipelines/container-archive"
FORMAT_VERSION = 3  # 2 counts the blobs instead of listing them; 3 adds fields and golden sets
MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"
CHUNKS = "chunks.jsonl"
GOLDEN_SETS = "golden_sets.jsonl"
VECTORS = "vectors.npy"
BLOB_PREFIX = "blobs/"
BLOBS = "blobs"  # the manifest's {count, bytes} of the blob members (from the versions that count them)
FORMATS = ("tar", "zip")

MEMBER_NAME = re.compile(r"^(documents\.jsonl|chunks\.jsonl|golden_sets\.jsonl|vectors\.npy|blobs/[0-9a-f]{64})$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ArchiveSpec:
    """What a reader accepts of one kind of archive: its manifest's format and version, the member
    names it may hold besides the manifest, the manifest sections that must be objects, and what
    else must hold of a manifest and the headers of its ``.npy`` members once every member is
    verified (``check(manifest, arrays)`` raises ``ArchiveError`` if not). ``version`` is the one
    written; ``older_versions`` are still read. From ``blobs_counted_from`` on, the manifest
    counts the ``blobs/<sha256>`` members (``BLOBS``) instead of listing them."""

    format: str
    version: int
    member_name: re.Pattern
    sections: tuple[str, ...]
    check: Callable[[dict, dict], None] | None = None
    older_versions: tuple[int, ...] = ()
    blobs_counted_from: int | None = None

    def counts_blobs(self, version: int) -> bool:
        return self.blobs_counted_from is not None and version >= self.blobs_counted_from

DOCUMENT_FIELDS = {
    "id": str, "source_key": str, "title": str, "uri": str, "raw_sha256": str,
    "source_hash": str, "content_hash": str, "source_updated_at": (str, type(None)), "text": str,
}
CHUNK_FIELDS = {"document_id": str, "source_key": str, "ordinal": int, "content_hash": str, "text": str}
GOLDEN_SET_FIELDS = {"content_hash": str, "body": str, "queries": int, "created_at": str}


class ArchiveError(OperatorError, ValueError):
    """The archive cannot be used; the message says why. Nothing has been written."""


class UnsupportedFormat(ArchiveError):
    pass


class ChecksumMismatch(ArchiveError):
    pass


class UnsafeMember(ArchiveError):
    pass


class ManifestMismatch(ArchiveError):
    """The manifest describes other vectors than the archive holds, or than this registry's
    embedder version makes."""


def check_container_manifest(manifest: dict, arrays: dict) -> None:
    """The manifest's embedder dimension is a dimension, and ``vectors.npy`` (if any) is what the
    manifest declares: float32, one row per chunk, ``embedder.dimension`` columns."""
    embedder = manifest["embedder"]
    version, dimension = embedder.get("version"), embedder.get("dimension")
    if not isinstance(version, str) or not version:
        raise ManifestMismatch(f"{MANIFEST} names no embedder version: the archive cannot be imported")
    if not isinstance(dimension, int) or isinstance(dimension, bool) or not 1 <= dimension <= 65536:
        raise ManifestMismatch(f"{MANIFEST} gives {version} the dimension {dimension!r}, not a vector size")
    has_vectors = any(m["name"] == VECTORS for m in manifest["members"])
    if bool(manifest["options"].get("include_vectors")) != has_vectors:
        raise ManifestMismatch(
            f"{MANIFEST} says include_vectors {bool(manifest['options'].get('include_vectors'))}, but the archive "
            f"{'holds' if has_vectors else 'lacks'} {VECTORS}"
        )
    if not has_vectors:
        return
    header = arrays.get(VECTORS)
    if header is None:
        raise ManifestMismatch(f"{VECTORS} is not a .npy array numpy reads")
    # The rows are counted against the chunks by an import, which reads them.
    rows = manifest["counts"].get("vectors", header.shape[0] if header.shape else None)
    if header.dtype != "<f4" or header.shape != (rows, dimension):
        raise ManifestMismatch(
            f"{VECTORS} is {header}, expected float32 ({rows}, {dimension}) as {MANIFEST} declares "
            f"({rows} vectors of {version}, {dimension}-d): the manifest or the vectors were altered; export the "
            "container again"
        )


def check_registered_dimension(manifest: dict) -> bool:
    """The manifest's embedder dimension is the one this embedder registry gives its version
    (``ManifestMismatch`` if not); False if the registry does not know the version."""
    from ops_pipelines.embedders import versions

    embedder = manifest["embedder"]
    known = versions().get(embedder["version"])
    if known is None:
        return False
    said = {"dimension": f"{embedder['dimension']}-d vectors", "chunker": f"chunks cut by {archive_chunker(manifest)}"}
    have = {"dimension": f"{known.dimension}-d vectors", "chunker": f"chunks cut by {known.chunker}"}
    for key in said:
        if said[key] != have[key]:
            raise ManifestMismatch(
                f"{MANIFEST} says {known.name} makes {said[key]}, this embedder registry says {have[key]}: the "
                f"archive's manifest was altered, or it comes from a registry where {known.name} means another "
                "model; export it again, or import it with --embedder-version to re-embed"
            )
    return True


def archive_chunker(manifest: dict) -> str:
    """The chunker the archive's chunks were cut by (every export names it; para-800@1 was the only
    one there was before versions chose theirs)."""
    chunker = manifest["embedder"].get("chunker", "para-800@1")
    if not isinstance(chunker, str) or not chunker:
        raise ArchiveError(f"{MANIFEST}: embedder.chunker must name a chunker")
    return chunker


@dataclass(frozen=True)
class Limits:
    """What a reader accepts before it reads more: hostile archives stop at the first excess."""

    member_bytes: int = 16 << 30
    total_bytes: int = 64 << 30
    members: int = 2_000_000
    manifest_bytes: int = 64 << 20
    compression_ratio: int = 200  # zip: declared size / compressed size


DEFAULT_LIMITS = Limits()
CONTAINER_ARCHIVE = ArchiveSpec(
    FORMAT, FORMAT_VERSION, MEMBER_NAME, ("container", "embedder", "options", "counts"), check_container_manifest,
    older_versions=(1, 2), blobs_counted_from=2,
)


def archive_key(container_id: str, run_id: str, fmt: str) -> str:
    return f"exports/{container_id}/{run_id}.{fmt}"
