"""The interface of a model: texts in, L2-normalised float32 vectors out. The registry wraps each
in a ``VersionEmbedder``, which adds the version's prompts for documents and queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), dimension)`` float32 array of unit vectors."""
        ...
