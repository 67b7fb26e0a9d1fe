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

from ops_pipelines.chunking import (
    PARAGRAPH_CHUNKER,
    Chunker,
    ParagraphChunker,
    TokenChunker,
    count_tokens,
    load_tokenizer,
)
from ops_pipelines.embedders.base import Embedder
from ops_pipelines.errors import OperatorError

BUILTIN_FILE = Path(__file__).with_name("versions.toml")
PROVIDERS = ("sentence-transformers", "hashing", "openai", "ollama")
SERVED = ("openai", "ollama")
DEFAULT_VERSION = "minilm-l6-v2@2"


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
    chunker: str = PARAGRAPH_CHUNKER
    window: int | None = None  # the most tokens the model reads, special tokens included
    query_prompt: str = ""  # put before a search's query
    document_prompt: str = ""  # put before every chunk's text
    sparse: str | None = None  # "bm25": hybrid search, a BM25 sparse vector beside the dense one
    min_score: float | None = None  # a search's least score (overrides the calibrated one)
    # served models (provider openai or ollama)
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None  # the name of the environment variable holding the key
    send_dimensions: bool = False  # ask the API for `dimension`-long vectors (OpenAI's text-embedding-3)
    batch_size: int = 32  # texts per request
    batch_chars: int = 100_000  # characters per request
    in_flight: int = 2  # requests at once
    timeout_s: float = 120.0  # to wait for one response

    @property
    def hybrid(self) -> bool:
        return self.sparse is not None


_COMMON_KEYS = {
    "provider", "dimension", "normalize", "chunker", "window", "query_prompt", "document_prompt", "sparse", "min_score",
}
SPARSE_MODELS = ("bm25",)
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


def _chunker(name: str, spec: dict, where: str) -> Chunker:
    if "@" not in name:
        raise InvalidRegistry(f"{where}: name must look like <name>@<n>")
    kind = spec.get("kind")
    if kind == "paragraphs":
        if set(spec) - {"kind", "max_chars"}:
            raise InvalidRegistry(f"{where}: unknown keys {sorted(set(spec) - {'kind', 'max_chars'})}")
        return ParagraphChunker(name, _whole(spec, "max_chars", 800, 100, 100_000, where))
    if kind != "tokens":
        raise InvalidRegistry(f"{where}: kind must be tokens or paragraphs")
    unknown = set(spec) - {"kind", "tokenizer", "max_tokens", "overlap"}
    if unknown:
        raise InvalidRegistry(f"{where}: unknown keys {sorted(unknown)}")
    tokenizer = _text(spec, "tokenizer", where)
    if not tokenizer:
        raise InvalidRegistry(f"{where}: tokenizer must be \"bundled-minilm\" or the path of a tokenizer.json or model folder")
    path = str(_bundled_minilm()) if tokenizer == "bundled-minilm" else tokenizer
    try:
        load_tokenizer(path)
    except Exception as exc:  # the tokenizers library's own errors: a missing or unreadable file
        raise InvalidRegistry(f"{where}: no tokenizer at {path} ({exc})") from None
    max_tokens = _whole(spec, "max_tokens", 0, 16, 100_000, where)
    overlap = _whole(spec, "overlap", 0, 0, max_tokens // 2, where)
    return TokenChunker(name, path, max_tokens, overlap)


def _bundled_minilm() -> Path:
    from ops_pipelines.embedders.sentence_transformer import bundled_minilm_path

    return bundled_minilm_path()


def _version(name: str, spec: dict, where: str) -> EmbedderVersion:
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
    if spec.get("sparse", SPARSE_MODELS[0]) not in SPARSE_MODELS:
        raise InvalidRegistry(f"{where}: sparse must be one of {', '.join(SPARSE_MODELS)}")
    min_score = spec.get("min_score")
    if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, int | float)):
        raise InvalidRegistry(f"{where}: min_score must be a number (the least score a search returns)")
    return EmbedderVersion(
        name=name,
        provider=provider,
        dimension=dimension,
        model_path=_text(spec, "model_path", where),
        chunker=_text(spec, "chunker", where) or PARAGRAPH_CHUNKER,
        window=_whole(spec, "window", 0, 8, 1_000_000, where) if "window" in spec else None,
        query_prompt=_text(spec, "query_prompt", where) or "",
        document_prompt=_text(spec, "document_prompt", where) or "",
        sparse=spec.get("sparse"),
        min_score=None if min_score is None else float(min_score),
        **(_served(spec, where) if provider in SERVED else {}),
    )


def _check_fit(version: EmbedderVersion, chunker: Chunker | None, where: str) -> None:
    """A version names a known chunker, and a version with a window one whose chunks fit in it
    (with the special tokens and the document prompt)."""
    if chunker is None:
        raise InvalidRegistry(f"{where}: unknown chunker {version.chunker!r}")
    if isinstance(chunker, TokenChunker) and version.window is None:
        raise InvalidRegistry(f"{where}: declare window = <tokens the model reads> so the fit of {chunker.name} is checked")
    if version.window is None:
        return
    if not isinstance(chunker, TokenChunker):
        raise InvalidRegistry(
            f"{where}: chunker {chunker.name} cuts by characters and can exceed the {version.window}-token window: "
            "use a token chunker"
        )
    tokenizer = chunker.tokenizer
    prompt = count_tokens(tokenizer, [version.document_prompt])[0] if version.document_prompt else 0
    needed = chunker.max_tokens + tokenizer.num_special_tokens_to_add(False) + prompt
    if needed > version.window:
        raise InvalidRegistry(
            f"{where}: chunks of {chunker.name} take up to {needed} tokens (max_tokens {chunker.max_tokens}, "
            f"special tokens and document prompt included), more than the model's window of {version.window}"
        )


@dataclass(frozen=True)
class Registry:
    versions: dict[str, EmbedderVersion]
    chunkers: dict[str, Chunker]


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidRegistry(f"embedder registry {path}: {exc}") from exc


def registry() -> Registry:
    """The built-in versions and chunkers, plus (and overridden by) those of ``OPS_EMBEDDERS_FILE``."""
    files = [BUILTIN_FILE] + ([Path(os.environ["OPS_EMBEDDERS_FILE"])] if os.environ.get("OPS_EMBEDDERS_FILE") else [])
    found_versions: dict[str, tuple[EmbedderVersion, str]] = {}
    found_chunkers: dict[str, Chunker] = {}
    for path in files:
        data = _read(path)
        for name, spec in data.get("chunkers", {}).items():
            found_chunkers[name] = _chunker(name, spec, f"embedder registry {path}, chunker {name!r}")
        for name, spec in data.get("versions", {}).items():
            where = f"embedder registry {path}, version {name!r}"
            found_versions[name] = (_version(name, spec, where), where)
    for version, where in found_versions.values():
        _check_fit(version, found_chunkers.get(version.chunker), where)
    return Registry({name: v for name, (v, _) in found_versions.items()}, found_chunkers)


def versions() -> dict[str, EmbedderVersion]:
    return registry().versions


def _known(found: Registry, name: str) -> EmbedderVersion:
    try:
        return found.versions[name]
    except KeyError:
        raise UnknownEmbedderVersion(
            f"unknown embedder version {name!r}; known: {', '.join(sorted(found.versions))}"
        ) from None


def get_version(name: str) -> EmbedderVersion:
    return _known(registry(), name)


def chunker_of(version_name: str) -> Chunker:
    """The chunker the chunks of a version are cut with."""
    found = registry()
    return found.chunkers[_known(found, version_name).chunker]


class VersionEmbedder:
    """A version's model with its prompts: ``embed`` for chunk texts, ``embed_queries`` for searches."""

    def __init__(self, version: EmbedderVersion, model: Embedder, chunker: Chunker):
        self.version = version
        self.model = model
        self.chunker = chunker
        self.dimension = version.dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.embed(_prompted(self.version.document_prompt, texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.embed(_prompted(self.version.query_prompt, texts))

    def over_window(self, texts: Sequence[str]) -> int | None:
        """How many chunk texts (with the document prompt and special tokens) are longer than the
        model reads, for a version whose chunker can cut them so (None for one whose cannot, or
        whose model's window or tokenizer is not known here)."""
        window = self.version.window or getattr(self.model, "window", None)
        tokenizer = getattr(self.model, "tokenizer_path", None)
        if window is None or tokenizer is None or isinstance(self.chunker, TokenChunker):
            return None
        counts = count_tokens(load_tokenizer(tokenizer), _prompted(self.version.document_prompt, texts), special=True)
        return sum(n > window for n in counts)


def _prompted(prompt: str, texts: Sequence[str]) -> Sequence[str]:
    return [prompt + text for text in texts] if prompt else texts


def load_embedder(name: str) -> VersionEmbedder:
    """The embedder for a version, loaded once per process (a model load takes seconds)."""
    return _load(get_version(name))


@lru_cache(maxsize=None)
def _load(version: EmbedderVersion) -> VersionEmbedder:
    return VersionEmbedder(version, _model(version), chunker_of(version.name))


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
