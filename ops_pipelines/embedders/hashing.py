"""A deterministic feature-hashing embedder: lexical, instant, no model. For tests and benches."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    def __init__(self, dimension: int):
        if dimension < 2:
            raise ValueError("hashing embedder needs a dimension of at least 2")
        self.dimension = dimension
        self._slots: dict[str, tuple[int, float]] = {}

    def _slot(self, token: str) -> tuple[int, float]:
        slot = self._slots.get(token)
        if slot is None:
            h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            slot = self._slots[token] = (h % self.dimension, 1.0 if h >> 63 else -1.0)
        return slot

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            # The whole text is one more feature, so no text (not even punctuation) maps to zero.
            for token in [*_TOKEN.findall(text.lower()), "\0" + text]:
                index, sign = self._slot(token)
                out[row, index] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)
