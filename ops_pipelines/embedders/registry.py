"""Named embedder versions, declared in ``versions.toml`` and extended by ``OPS_EMBEDDERS_FILE``.

A version fixes provider, model, dimension, normalisation, prompts and chunker for good: vectors
from different versions never share a collection, and the embedding cache is keyed by the name.
Where a served model answers (``base_url``) and how it is asked (batching, requests in flight,
timeout) can change without a new name.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ops_pipelines.chunking import CHUNKER_VERSION
from ops_pipelines.embedders.base import Embedder
from ops_pipelines.errors import OperatorError

BUILTIN_FILE = Path(__file__).with_name("versions.toml")
PROVIDERS = ("sentence-transformers", "hashing", "openai", "ollama")
SERVED = ("openai", "ollama")
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
    query_prompt: str = ""  # put before a search's query
    document_prompt: str = ""  # put before every chunk's text
    # served models (provider openai or ollama)
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None  # the name of the environment variable holding the key
    send_dimensions: bool = False  # ask the API for `dimension`-long vectors (OpenAI's text-embedding-3)
    batch_size: int = 32  # texts per request
    batch_chars: int = 100_000  # characters per request
    in_flight: int = 2  # requests at once
    timeout_s: float = 120.0  # to wait for one response


_COMMON_KEYS = {"provider", "dimension", "normalize", "chunker", "query_prompt", "document_prompt"}
_PROVIDER_KEYS = {
    "sentence-transformers": {"model_path"},
    "hashing": set(),
    "openai": {"base_url", "model", "api_key_env", "send_dimensions", "batch_size", "batch_chars", "in_flight",
               "timeout_s"},
}
_PROVIDER_KEYS["ollama"] = _PROVIDER_KEYS["openai"]
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _whole(spec: dict, key: str, default: int, low: int, high: int, where: str) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRegistry(f"{where}: {key} must be an integer from {low} to {high}")
    return value


def _text(spec: dict, key: str, where: str) -> str | None:
    value = spec.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRegistry(f"{where}: {key} must be a string")
    return value


def _served(spec: dict, where: str) -> dict:
    """The keys of a served model's version, checked."""
    base_url, model = _text(spec, "base_url", where), _text(spec, "model", where)
    if not base_url or not base_url.startswith(("http://", "https://")):
        raise InvalidRegistry(f"{where}: base_url must be the server's http(s) URL (e.g. http://127.0.0.1:7997/v1)")
    if not model:
        raise InvalidRegistry(f"{where}: model must name the served model")
    key_env = _text(spec, "api_key_env", where)
    if key_env is not None and not _ENV_NAME.fullmatch(key_env):
        raise InvalidRegistry(f"{where}: api_key_env must be the name of an environment variable")
    timeout = spec.get("timeout_s", 120.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 3600:
        raise InvalidRegistry(f"{where}: timeout_s must be a number of seconds from 0 to 3600")
    if not isinstance(spec.get("send_dimensions", False), bool):
        raise InvalidRegistry(f"{where}: send_dimensions must be true or false")
    return dict(
        base_url=base_url, model=model, api_key_env=key_env, send_dimensions=spec.get("send_dimensions", False),
        batch_size=_whole(spec, "batch_size", 32, 1, 4096, where),
        batch_chars=_whole(spec, "batch_chars", 100_000, 1000, 100_000_000, where),
        in_flight=_whole(spec, "in_flight", 2, 1, 64, where), timeout_s=float(timeout),
    )


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
        provider = spec.get("provider")
        if provider not in PROVIDERS:
            raise InvalidRegistry(f"{where}: provider must be one of {', '.join(PROVIDERS)}")
        if "api_key" in spec:
            raise InvalidRegistry(
                f"{where}: a key is never written in the registry: put it in an environment variable "
                "and name that variable with api_key_env"
            )
        unknown = set(spec) - _COMMON_KEYS - _PROVIDER_KEYS[provider]
        if unknown:
            raise InvalidRegistry(f"{where}: unknown keys {sorted(unknown)} for provider {provider}")
        dimension = spec.get("dimension")
        if not isinstance(dimension, int) or isinstance(dimension, bool) or not 2 <= dimension <= 65536:
            raise InvalidRegistry(f"{where}: dimension must be an integer from 2 to 65536")
        if spec.get("normalize", True) is not True:
            raise InvalidRegistry(f"{where}: only normalize = true (cosine) is supported")
        if spec.get("chunker", CHUNKER_VERSION) != CHUNKER_VERSION:
            raise InvalidRegistry(f"{where}: chunker must be {CHUNKER_VERSION} (the only one there is)")
        versions[name] = EmbedderVersion(
            name=name,
            provider=provider,
            dimension=dimension,
            model_path=_text(spec, "model_path", where),
            query_prompt=_text(spec, "query_prompt", where) or "",
            document_prompt=_text(spec, "document_prompt", where) or "",
            **(_served(spec, where) if provider in SERVED else {}),
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


class VersionEmbedder:
    """A version's model with its prompts: ``embed`` for chunk texts, ``embed_queries`` for searches."""

    def __init__(self, version: EmbedderVersion, model: Embedder):
        self.version = version
        self.model = model
        self.dimension = version.dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        prompt = self.version.document_prompt
        return self.model.embed([prompt + text for text in texts] if prompt else texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        prompt = self.version.query_prompt
        return self.model.embed([prompt + text for text in texts] if prompt else texts)


def load_embedder(name: str) -> VersionEmbedder:
    """The embedder for a version, loaded once per process (a model load takes seconds)."""
    return _load(get_version(name))


@lru_cache(maxsize=None)
def _load(version: EmbedderVersion) -> VersionEmbedder:
    return VersionEmbedder(version, _model(version))


def _model(version: EmbedderVersion) -> Embedder:
    if version.provider == "hashing":
        from ops_pipelines.embedders.hashing import HashingEmbedder

        return HashingEmbedder(version.dimension)
    if version.provider in SERVED:
        from ops_pipelines.embedders.served import ServedEmbedder

        return ServedEmbedder(version)
    from ops_pipelines.embedders.sentence_transformer import (
        SentenceTransformerEmbedder,
        bundled_minilm_path,
    )

    return SentenceTransformerEmbedder(version.model_path or bundled_minilm_path(), version.dimension)
