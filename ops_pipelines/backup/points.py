"""A collection's points in and out of a backup: ``points.jsonl`` (id and payload per line) and
``vectors.npy`` (float32, row i = line i), scrolled page by page so memory stays flat."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from ops_pipelines.archives.format import ArchiveError
from ops_pipelines.archives.writer import HashingWriter
from ops_pipelines.backup.format import POINTS, VECTORS, collection_member
from ops_pipelines.vectors import VectorStore

_PAGE = 1024


@dataclass(frozen=True)
class DumpedCollection:
    name: str
    dimension: int
    points: int
    ids: frozenset[str]
    members: dict[str, dict]  # member name -> {size, sha256}


@dataclass(frozen=True)
class LoadedPoints:
    ids: list[str]
    payloads: list[dict]
    vectors: np.ndarray


def dump_collection(store: VectorStore, name: str, staging: Path) -> DumpedCollection:
    dimension = store.collection_dimension(name)
    if dimension is None:
        raise ArchiveError(f"collection {name} does not exist in Qdrant")
    expected = store.count(name)
    points_out = HashingWriter(staging / collection_member(name, POINTS))
    vectors_out = HashingWriter(staging / collection_member(name, VECTORS))
    vectors_out.write(_npy_header(expected, dimension))
    ids: set[str] = set()
    for point in store.scroll(name, with_payload=True, with_vectors=True, page=_PAGE):
        ids.add(str(point.id))
        points_out.write(orjson.dumps({"id": str(point.id), "payload": point.payload}) + b"\n")
        vectors_out.write(np.asarray(point.vector, dtype="<f4").tobytes())
    if len(ids) != expected:
        raise ArchiveError(f"collection {name} changed while it was read ({expected} points, then {len(ids)})")
    members = {
        collection_member(name, POINTS): points_out.close(),
        collection_member(name, VECTORS): vectors_out.close(),
    }
    return DumpedCollection(name, dimension, expected, frozenset(ids), members)


def load_points(folder: Path, name: str, dimension: int, count: int) -> LoadedPoints:
    """Read and check one collection of an extracted backup: ids are unique canonical UUIDs,
    payloads are objects, vectors have the manifest's shape and only finite values."""
    ids: list[str] = []
    payloads: list[dict] = []
    where = collection_member(name, POINTS)
    with open(folder / where, "rb") as lines:
        for number, line in enumerate(lines, 1):
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
    if len(ids) != count or len(set(ids)) != count:
        raise ArchiveError(f"{where}: {len(ids)} points ({len(set(ids))} distinct), the manifest says {count}")
    try:
        vectors = np.load(folder / collection_member(name, VECTORS), allow_pickle=False)
    except ValueError as exc:
        raise ArchiveError(f"{collection_member(name, VECTORS)} is not a float32 array: {exc}") from None
    if vectors.dtype != np.float32 or vectors.shape != (count, dimension) or not np.isfinite(vectors).all():
        raise ArchiveError(
            f"{collection_member(name, VECTORS)}: {vectors.dtype} {vectors.shape}, expected float32 "
            f"({count}, {dimension}) with finite values"
        )
    return LoadedPoints(ids, payloads, vectors)


def _npy_header(rows: int, dimension: int) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (rows, dimension)})
    return header.getvalue()
