"""Named embedder versions, declared in ``versions.toml`` and extended by ``OPS_EMBEDDERS_FILE``.

A version fixes provider, model, dimension, normalisation and chunker for good: vectors from
different versions never share a collection, and the embedding cache is keyed by the name.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ops_pipelines.chunking import CHUNKER_VERSION
from ops_pipelines.embedders.base import Embedder
from ops_pipelines.errors import OperatorError

BUILTIN_FILE = Path(__file__).with_name("versions.toml")
PROVIDERS = ("sentence-transformers", "hashing")
DEFAULT_VERSION = "minilm-l6-v2@1"


class UnknownEmbedderVersion(OperatorError, LookupError):
    pass


class InvalidRegistry(OperatorError, ValueError):
    pass


@dataclass(frozen=True)
class EmbedderVersion:
    name: str
    provider: str
    dimension: int
    model_path: str | None = None  # None: the bundled all-MiniLM-L6-v2
    normalize: bool = True
    chunker: str = CHUNKER_VERSION


def _parse(path: Path) -> dict[str, EmbedderVersion]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidRegistry(f"embedder registry {path}: {exc}") from exc
    versions = {}
    for name, spec in data.get("versions", {}).items():
        where = f"embedder registry {path}, version {name!r}"
        if "@" not in name:
            raise InvalidRegistry(f"{where}: name must look like <model>@<n>")
        unknown = set(spec) - {"provider", "dimension", "model_path", "normalize", "chunker"}
        if unknown:
            raise InvalidRegistry(f"{where}: unknown keys {sorted(unknown)}")
        if spec.get("provider") not in PROVIDERS:
            raise InvalidRegistry(f"{where}: provider must be one of {', '.join(PROVIDERS)}")
        dimension = spec.get("dimension")
        if not isinstance(dimension, int) or isinstance(dimension, bool) or not 2 <= dimension <= 65536:
            raise InvalidRegistry(f"{where}: dimension must be an integer from 2 to 65536")
        if spec.get("normalize", True) is not True:
            raise InvalidRegistry(f"{where}: only normalize = true (cosine) is supported")
        if spec.get("chunker", CHUNKER_VERSION) != CHUNKER_VERSION:
            raise InvalidRegistry(f"{where}: chunker must be {CHUNKER_VERSION} (the only one there is)")
        versions[name] = EmbedderVersion(
            name=name,
            provider=spec["provider"],
            dimension=dimension,
            model_path=spec.get("model_path"),
        )
    return versions


def versions() -> dict[str, EmbedderVersion]:
    """The built-in versions, plus (and overridden by) those of ``OPS_EMBEDDERS_FILE``."""
    found = _parse(BUILTIN_FILE)
    extra = os.environ.get("OPS_EMBEDDERS_FILE")
    if extra:
        found.update(_parse(Path(extra)))
    return found


def get_version(name: str) -> EmbedderVersion:
    known = versions()
    try:
        return known[name]
    except KeyError:
        raise UnknownEmbedderVersion(
            f"unknown embedder version {name!r}; known: {', '.join(sorted(known))}"
        ) from None


def load_embedder(name: str) -> Embedder:
    """The embedder for a version, loaded once per process (a model load takes seconds)."""
    return _load(get_version(name))


@lru_cache(maxsize=None)
def _load(version: EmbedderVersion) -> Embedder:
    if version.provider == "hashing":
        from ops_pipelines.embedders.hashing import HashingEmbedder

        return HashingEmbedder(version.dimension)
    from ops_pipelines.embedders.sentence_transformer import (
        SentenceTransformerEmbedder,
        bundled_minilm_path,
    )

    return SentenceTransformerEmbedder(version.model_path or bundled_minilm_path(), version.dimension)
