"""Sets of point ids as sorted arrays of their 16 UUID bytes: a million ids in 16 MB, where a
Python set of their strings takes about 110 MB (so memory stays flat as containers grow)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence

import numpy as np

from ops_pipelines.vectors.base import POINT_NAMESPACE

DTYPE = np.dtype("S16")
EMPTY = np.zeros(0, dtype=DTYPE)


def point_id_array(container_id: str, rows: Sequence[tuple]) -> np.ndarray:
    """``point_uuid`` of rows starting (document id, ordinal, chunk hash), as an id array: the
    same uuid5, hashed batch-wise without a UUID object per point."""
    prefix = hashlib.sha1(POINT_NAMESPACE.bytes + f"{container_id}/".encode())
    digests = []
    for row in rows:
        h = prefix.copy()
        h.update(f"{row[0]}/{row[1]}/{row[2]}".encode())
        digests.append(h.digest()[:16])
    raw = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50  # version 5
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.view(DTYPE).ravel()


def id_bytes(ids: Sequence[str]) -> np.ndarray:
    """Point ids (UUID strings) as an array, in the order given."""
    return np.frombuffer(b"".join(uuid.UUID(i).bytes for i in ids), dtype=DTYPE) if len(ids) else EMPTY


def id_set(parts: Iterable[np.ndarray]) -> np.ndarray:
    """The sorted distinct ids of the arrays ``parts``."""
    arrays = list(parts)
    return np.unique(np.concatenate(arrays)) if arrays else EMPTY


def contains(ids: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each id of ``query``, whether the sorted array ``ids`` has it."""
    return locate(ids, query)[0]


def locate(ids: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each id of ``query``, whether the sorted array ``ids`` has it, and where (an index
    into ``ids``, meaningful where found)."""
    if not len(ids):
        return np.zeros(len(query), dtype=bool), np.zeros(len(query), dtype=np.intp)
    at = np.minimum(np.searchsorted(ids, query), len(ids) - 1)
    return ids[at] == query, at


def sorted_ids(pages: Iterable[np.ndarray], expected: int) -> np.ndarray:
    """The ids of ``pages``, which a store scrolls in id order, as one sorted id array, filled in
    place (``expected`` is how many there should be: about 16 MB a million, with no copy)."""
    out, n = np.empty(expected, dtype=DTYPE), 0
    for page in pages:
        if n + len(page) > len(out):  # points were added meanwhile
            out = np.concatenate([out, np.empty(max(len(page), len(out) // 2), dtype=DTYPE)])
        out[n : n + len(page)] = page
        n += len(page)
    out = out[:n]
    return out if n < 2 or bool((out[1:] > out[:-1]).all()) else np.unique(out)


def id_strings(ids: np.ndarray) -> list[str]:
    """Back to UUID strings (numpy drops an S16 value's trailing zero bytes: padded again)."""
    return [str(uuid.UUID(bytes=bytes(b).ljust(16, b"\0"))) for b in ids]
