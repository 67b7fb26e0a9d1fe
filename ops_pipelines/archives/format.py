"""The container archive, format version 1 (documented in the README, "Archive format").

A tar (POSIX pax, uncompressed) or zip (stored, zip64) whose first member is ``manifest.json``:

    manifest.json     format, format_version, created_at, run_id, container, embedder, options,
                      counts, and members: [{name, size, sha256}] for every other member
    documents.jsonl   one JSON object per active document
    chunks.jsonl      one JSON object per active chunk, ordered by (source_key, ordinal)
    vectors.npy       optional: float32 (chunks x dimension), row i = line i of chunks.jsonl
    blobs/<sha256>    optional: the raw bytes each document was read from
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ops_pipelines.errors import OperatorError

FORMAT = "ops-pipelines/container-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"
CHUNKS = "chunks.jsonl"
VECTORS = "vectors.npy"
BLOB_PREFIX = "blobs/"
FORMATS = ("tar", "zip")

MEMBER_NAME = re.compile(r"^(documents\.jsonl|chunks\.jsonl|vectors\.npy|blobs/[0-9a-f]{64})$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ArchiveSpec:
    """What a reader accepts of one kind of archive: its manifest's format and version, the member
    names it may hold besides the manifest, and the manifest sections that must be objects."""

    format: str
    version: int
    member_name: re.Pattern
    sections: tuple[str, ...]


CONTAINER_ARCHIVE = ArchiveSpec(FORMAT, FORMAT_VERSION, MEMBER_NAME, ("container", "embedder", "options", "counts"))

DOCUMENT_FIELDS = {
    "id": str, "source_key": str, "title": str, "uri": str, "raw_sha256": str,
    "source_hash": str, "content_hash": str, "source_updated_at": (str, type(None)), "text": str,
}
CHUNK_FIELDS = {"document_id": str, "source_key": str, "ordinal": int, "content_hash": str, "text": str}


class ArchiveError(OperatorError, ValueError):
    """The archive cannot be used; the message says why. Nothing has been written."""


class UnsupportedFormat(ArchiveError):
    pass


class ChecksumMismatch(ArchiveError):
    pass


class UnsafeMember(ArchiveError):
    pass


@dataclass(frozen=True)
class Limits:
    """What a reader accepts before it reads more: hostile archives stop at the first excess."""

    member_bytes: int = 16 << 30
    total_bytes: int = 64 << 30
    members: int = 2_000_000
    manifest_bytes: int = 64 << 20
    compression_ratio: int = 200  # zip: declared size / compressed size


DEFAULT_LIMITS = Limits()


def archive_key(container_id: str, run_id: str, fmt: str) -> str:
    return f"exports/{container_id}/{run_id}.{fmt}"
