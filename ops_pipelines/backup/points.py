"""A collection's points in and out of a backup: ``points.jsonl`` (id and payload per line) and
``vectors.npy`` (float32, row i = line i), scrolled out and read back page by page so memory
stays flat."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from ops_pipelines.archives.format import ArchiveError
from ops_pipelines.archives.npy import Rows
from ops_pipelines.archives.writer import HashingWriter
from ops_pipelines.backup.format import POINTS, VECTORS, collection_member
from ops_pipelines.vectors import VectorStore
from ops_pipelines.vectors.ids import id_set

_PAGE = 1024


@dataclass(frozen=True)
class DumpedCollection:
    name: str
    dimension: int
    points: int
    ids: np.ndarray  # sorted id array (``vectors.ids``)
    members: dict[str, dict]  # member name -> {size, sha256}
    lengths: dict[str, int] | None = None  # the shard layout's: file -> length before its trailing zeros were cut
    hybrid: bool = False  # BM25 vectors beside the dense ones (computed again from the text on restore)


def dump_collection(store: VectorStore, name: str, staging: Path) -> DumpedCollection:
    dimension = store.collection_dimension(name)
    if dimension is None:
        raise ArchiveError(f"collection {name} does not exist in Qdrant")
    expected = store.count(name)
    points_out = HashingWriter(staging / collection_member(name, POINTS))
    vectors_out = HashingWriter(staging / collection_member(name, VECTORS))
    vectors_out.write(_npy_header(expected, dimension))
    parts = []
    for page in store.pages(name, with_payload=True, with_vectors=True, page=_PAGE):
        parts.append(page.ids)
        points_out.write(
            b"".join(orjson.dumps({"id": pid, "payload": p}) + b"\n" for pid, p in zip(page.id_strings(), page.payloads))
        )
        vectors_out.write(np.asarray(page.vectors, dtype="<f4").tobytes())
    ids = id_set(parts)
    if len(ids) != expected:
        raise ArchiveError(f"collection {name} changed while it was read ({expected} points, then {len(ids)})")
    members = {
        collection_member(name, POINTS): points_out.close(),
        collection_member(name, VECTORS): vectors_out.close(),
    }
    return DumpedCollection(name, dimension, expected, ids, members, hybrid=store.is_hybrid(name))


def point_batches(folder: Path, name: str, dimension: int, count: int) -> Iterator[tuple[list[str], list[dict], np.ndarray]]:
    """Read and check one collection of an extracted backup, (ids, payloads, vectors) a batch at
    a time: ids are canonical UUIDs, payloads are objects, vectors have the manifest's shape and
    only finite values, and there are ``count`` points (repeated ids are the checks' to find)."""
    where, vectors_member = collection_member(name, POINTS), collection_member(name, VECTORS)
    with Rows(folder / vectors_member, vectors_member) as vectors:
        if vectors.dtype != np.float32 or vectors.shape != (count, dimension):
            raise ArchiveError(f"{vectors_member}: {vectors.dtype} {vectors.shape}, expected float32 ({count}, {dimension})")
        yield from _batches(folder / where, where, vectors, count)


def _batches(lines_path: Path, where: str, vectors: Rows, count: int) -> Iterator[tuple[list[str], list[dict], np.ndarray]]:
    ids: list[str] = []
    payloads: list[dict] = []
    number = 0
    with open(lines_path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            if number > count:
                break
            try:
                record = orjson.loads(line)
                point_id, payload = record["id"], record["payload"]
                canonical = str(uuid.UUID(point_id)) == point_id
            except (ValueError, TypeError, KeyError, AttributeError):
                raise ArchiveError(f"{where} line {number}: not an {{id, payload}} point") from None
            if not canonical or not isinstance(payload, dict):
                raise ArchiveError(f"{where} line {number}: the id is not a UUID or the payload not an object")
            ids.append(point_id)
            payloads.append(payload)
            if len(ids) == _PAGE:
                yield ids, payloads, _finite(vectors, number - len(ids), number)
                ids, payloads = [], []
    if number != count:
        raise ArchiveError(f"{where}: {'more than ' if number > count else ''}{number} points, the manifest says {count}")
    if ids:
        yield ids, payloads, _finite(vectors, number - len(ids), number)


def _finite(vectors: Rows, start: int, end: int) -> np.ndarray:
    """The next rows, ``start`` to ``end``, all finite."""
    block = vectors.next(end - start)
    if not np.isfinite(block).all():
        raise ArchiveError(f"{vectors.member}: rows {start}-{end - 1} hold NaN or infinite values")
    return block


def _npy_header(rows: int, dimension: int) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (rows, dimension)})
    return header.getvalue()
