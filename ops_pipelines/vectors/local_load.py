"""Bulk loading of a new, empty collection in Qdrant local mode.

Local mode commits one SQLite transaction per point it upserts (about 1 ms each here), which
makes restoring a 20,000-point collection take half a minute. This writes all points of a
collection the client has just created, and closed, in one transaction, in the storage layout
local mode reads when it opens (``collection/<name>/storage.sqlite``, a ``points`` table of
pickled ``PointStruct`` keyed by the pickled id, as ``CollectionPersistence`` writes them).

The layout is qdrant-client's, not a public API: ``local_load_supported`` checks it is what this
code expects, and callers fall back to ordinary upserts when it is not. The tests load the same
points both ways and compare what the public client returns.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from qdrant_client import models

PointBatch = tuple[Sequence[str], np.ndarray, Sequence[dict]]  # ids, vectors (row i = ids[i]), payloads

try:
    from qdrant_client._pydantic_compat import construct
    from qdrant_client.local.persistence import STORAGE_FILE_NAME, CollectionPersistence
except ImportError:  # pragma: no cover - a qdrant-client without this layout
    CollectionPersistence = None


def storage_file(path: str | Path, collection: str) -> Path:
    return Path(path) / "collection" / collection / STORAGE_FILE_NAME


def local_load_supported(path: str | Path, collection: str) -> bool:
    """True if ``collection`` has the storage file and empty ``points`` table this module writes."""
    if CollectionPersistence is None or not storage_file(path, collection).is_file():
        return False
    with sqlite3.connect(storage_file(path, collection)) as con:
        columns = [row[1] for row in con.execute("PRAGMA table_info(points)")]
        empty = columns == ["id", "point"] and con.execute("SELECT count(*) FROM points").fetchone()[0] == 0
    con.close()
    return empty


def write_points(path: str | Path, collection: str, batches: Iterable[PointBatch]) -> int:
    """All points of ``collection`` in one transaction, batch by batch (a batch's Python objects
    are gone before the next is built); returns how many. The client must be closed meanwhile:
    it reads the points when it next opens the folder."""
    written = 0

    def rows():
        nonlocal written
        for ids, vectors, payloads in batches:
            # One row's floats at a time: a restore passes a whole collection as one batch.
            for point_id, vector, payload in zip(ids, np.asarray(vectors, dtype=np.float32), payloads, strict=True):
                point = construct(models.PointStruct, id=point_id, vector=vector.tolist(), payload=payload)
                yield CollectionPersistence.encode_key(point_id), pickle.dumps(point)
            written += len(ids)

    con = sqlite3.connect(storage_file(path, collection))
    try:
        with con:
            con.executemany("INSERT INTO points VALUES (?, ?)", rows())
    finally:
        con.close()
    return written
