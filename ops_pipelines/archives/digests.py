"""sha256 digests packed into arrays of their 32 bytes: the blobs an archive holds, or the ones an
object store has, however many documents there are, without a Python string per blob (about
120 bytes each, plus a set's or a list's slot)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ops_pipelines.vectors.ids import contains

DTYPE = np.dtype("S32")


def packed(hexes: Iterable[str]) -> np.ndarray:
    """The digests ``hexes`` (sha256 hex) as an array, in the order given."""
    raw = bytearray()
    for sha in hexes:
        raw += bytes.fromhex(sha)
    return np.frombuffer(bytes(raw), dtype=DTYPE)


def hex_of(digest: bytes) -> str:
    """Back to hex (numpy drops an S32 value's trailing zero bytes: padded again)."""
    return bytes(digest).ljust(DTYPE.itemsize, b"\0").hex()


class DigestSet:
    """Which digests are in a set, from a sorted array of them: 32 bytes a digest."""

    def __init__(self, hexes: Iterable[str]):
        self._sorted = np.sort(packed(hexes))

    def __len__(self) -> int:
        return len(self._sorted)

    def __contains__(self, sha: str) -> bool:
        return bool(contains(self._sorted, packed([sha]))[0])
