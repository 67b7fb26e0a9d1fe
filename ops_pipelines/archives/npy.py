"""``.npy`` arrays of archives and backups: their headers, and their rows read a block at a time.

Rows are read with plain reads, not through a memory map: every page of a map that a process
has read counts in its memory until it is unmapped (about a GB for a million 256-d rows read
once through), where a read's pages stay in the page cache only.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np

from ops_pipelines.archives.format import ArchiveError

_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_header(stream: IO[bytes]) -> tuple[np.dtype, tuple[int, ...]] | None:
    """The dtype and shape a ``.npy`` stream's header declares, the stream left at its data; None
    if it is not a C-ordered array numpy reads."""
    try:
        shape, fortran, dtype = _READERS[np.lib.format.read_magic(stream)](stream)
    except (ValueError, EOFError, SyntaxError, TypeError, KeyError):
        return None
    return None if fortran else (dtype, tuple(shape))


class Rows:
    """The rows of a 2-d ``.npy`` file, read in order a block at a time (``next``)."""

    def __init__(self, path: Path, member: str):
        self.member = member
        self._handle = open(path, "rb")
        header = read_header(self._handle)
        if header is None or len(header[1]) != 2:
            self._handle.close()
            raise ArchiveError(f"{member} is not a 2-d array numpy reads")
        self.dtype, self.shape = header
        self._row_bytes = self.dtype.itemsize * self.shape[1]

    def __enter__(self) -> Rows:
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()

    def next(self, rows: int) -> np.ndarray:
        data = self._handle.read(rows * self._row_bytes)
        if len(data) != rows * self._row_bytes:
            raise ArchiveError(f"{self.member} ends before its {self.shape[0]} rows")
        return np.frombuffer(data, dtype=self.dtype).reshape(rows, self.shape[1])
