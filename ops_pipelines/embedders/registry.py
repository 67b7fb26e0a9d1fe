"""Named embedder versions. A version fixes provider, model and dimension for good: vectors from
different versions never share a collection, and the embedding cache is keyed by the name."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ops_pipelines.embedders.base import Embedder


class UnknownEmbedderVersion(LookupError):
    pass


@dataclass(frozen=True)
class EmbedderVersion:
    name: str
    provider: str  # "hashing" | "sentence-transformers"
    dimension: int
    model_path: str | None = None  # None: the bundled all-MiniLM-L6-v2


VERSIONS: dict[str, EmbedderVersion] = {
    v.name: v
    for v in (
        EmbedderVersion("minilm-l6-v2@1", "sentence-transformers", 384),
        EmbedderVersion("hash-256@1", "hashing", 256),
    )
}
DEFAULT_VERSION = "minilm-l6-v2@1"


def get_version(name: str) -> EmbedderVersion:
    try:
        return VERSIONS[name]
    except KeyError:
        raise UnknownEmbedderVersion(
            f"unknown embedder version {name!r}; known: {', '.join(sorted(VERSIONS))}"
        ) from None


@lru_cache(maxsize=None)
def load_embedder(name: str) -> Embedder:
    """The embedder for a version, loaded once per process (a model load takes seconds)."""
    version = get_version(name)
    if version.provider == "hashing":
        from ops_pipelines.embedders.hashing import HashingEmbedder

        return HashingEmbedder(version.dimension)
    from ops_pipelines.embedders.sentence_transformer import (
        SentenceTransformerEmbedder,
        bundled_minilm_path,
    )

    return SentenceTransformerEmbedder(version.model_path or bundled_minilm_path(), version.dimension)
