"""A deterministic feature-hashing embedder: lexical, instant, no model. For tests and benches."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Each feature (a lower-cased word, and the whole text) adds +1 or -1 at an index its hash
    picks; rows are normalised."""

    def __init__(self, dimension: int):
        if dimension < 2:
            raise ValueError("hashing embedder needs a dimension of at least 2")
        self.dimension = dimension
        # word -> its cell, index * 2 + (1 if its sign is negative): words repeat (a vocabulary),
        # so they are remembered; whole texts are not, or memory would grow with every text seen.
        self._cells: dict[str, int] = {}

    def _cell(self, feature: str) -> int:
        h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
        return (h % self.dimension) * 2 + (0 if h >> 63 else 1)

    def _word_cells(self, words: list[str]) -> list[int]:
        cells = list(map(self._cells.get, words))
        if None in cells:
            for word in words:
                if word not in self._cells:
                    self._cells[word] = self._cell(word)
            cells = list(map(self._cells.__getitem__, words))
        return cells

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        cells, per_row = [], []
        for text in texts:
            row = self._word_cells(_TOKEN.findall(text.lower()))
            # The whole text is one more feature, so no text (not even punctuation) maps to zero.
            row.append(self._cell("\0" + text))
            cells += row
            per_row.append(len(row))
        width = self.dimension * 2
        cells = np.asarray(cells, dtype=np.int64) + np.repeat(np.arange(len(texts), dtype=np.int64) * width, per_row)
        counts = np.bincount(cells, minlength=len(texts) * width).reshape(len(texts), self.dimension, 2)
        out = (counts[:, :, 0] - counts[:, :, 1]).astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)
