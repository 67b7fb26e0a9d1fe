"""Embedding models served over HTTP: any OpenAI-compatible ``POST {base_url}/embeddings`` (OpenAI,
Azure-compatible gateways, vLLM, TEI, infinity, LiteLLM, Ollama's ``/v1``) and Ollama's native
``POST {base_url}/api/embed``.

A call is cut into requests of at most ``batch_size`` texts and ``batch_chars`` characters, and
``in_flight`` of them are sent at once. Every request goes through the project's HTTP client
(``sources.http``): the outbound allow-list and the HTTPS rule apply, and 429, 5xx and dropped
connections are retried with backoff that honours ``Retry-After``. A call returns all its vectors
or raises, so its caller caches nothing of a call that failed. The API key is read from the
environment variable the registry names, sent only to ``base_url``'s origin and scrubbed from
every message.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from ops_pipelines.errors import OperatorError
from ops_pipelines.sources.base import SourceUnavailable
from ops_pipelines.sources.http import HttpClient, HttpPolicy, HttpResult

if TYPE_CHECKING:
    from ops_pipelines.embedders.registry import EmbedderVersion


class EmbedderUnavailable(OperatorError, RuntimeError):
    """The served model did not answer (after retries), refused the request, or answered with
    something that is not embeddings; nothing of the call was returned."""


class EmbedderMismatch(OperatorError, ValueError):
    """The model makes vectors of another dimension than its registry version declares."""


def _openai_request(model: str, texts: list[str], dimensions: int | None) -> dict:
    body: dict = {"model": model, "input": texts}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def _openai_vectors(answer: dict) -> list:
    rows = sorted(answer["data"], key=lambda row: row["index"])
    return [row["embedding"] for row in rows]


def _ollama_vectors(answer: dict) -> list:
    return answer["embeddings"]


# provider -> (path under base_url, the request body, the vectors of a response, in input order)
APIS = {
    "openai": ("/embeddings", _openai_request, _openai_vectors),
    "ollama": ("/api/embed", _openai_request, _ollama_vectors),  # same request fields
}


def batches(texts: Sequence[str], most: int, most_chars: int) -> Iterator[list[str]]:
    """Consecutive runs of ``texts`` of at most ``most`` texts and ``most_chars`` characters (a
    longer text goes alone)."""
    batch: list[str] = []
    size = 0
    for text in texts:
        if batch and (len(batch) == most or size + len(text) > most_chars):
            yield batch
            batch, size = [], 0
        batch.append(text)
        size += len(text)
    if batch:
        yield batch


class ServedEmbedder:
    def __init__(self, version: EmbedderVersion, policy: HttpPolicy | None = None, sleep=time.sleep):
        self.version = version
        self.dimension = version.dimension
        path, self._request_body, self._vectors = APIS[version.provider]
        self.url = version.base_url.rstrip("/") + path
        headers = {}
        if version.api_key_env:
            key = os.environ.get(version.api_key_env, "")
            if not key:
                raise EmbedderUnavailable(
                    f"embedder version {version.name!r} reads its API key from ${version.api_key_env}, "
                    "which is not set: export it where the runs execute (the code location and the daemon)"
                )
            headers["Authorization"] = f"Bearer {key}"
        base = policy or HttpPolicy.from_env()
        self._policy = HttpPolicy(
            allowed_hosts=base.allowed_hosts, connect_timeout=base.connect_timeout,
            read_timeout=version.timeout_s, attempts=base.attempts, backoff_max=base.backoff_max,
            max_bytes=max(base.max_bytes, 64 * 1024 * 1024),
        )
        self._headers = headers
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._sleep = sleep

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = list(batches(texts, self.version.batch_size, self.version.batch_chars))
        if len(parts) == 1 or self.version.in_flight == 1:
            results = [self._post(part) for part in parts]
        else:
            results = list(self._executor().map(self._post, parts))  # in order; the first failure raises
        return np.concatenate(results)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.version.in_flight, thread_name_prefix=f"embed-{self.version.name}"
                )
            return self._pool

    def _client(self) -> HttpClient:
        """One client (one connection pool) per thread: requests' sessions are not thread-safe."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = HttpClient(
                self._policy, name=f"embedder {self.version.name}", origin=self.version.base_url,
                secret_headers=self._headers, sleep=self._sleep,
            )
        return client

    def _post(self, texts: list[str]) -> np.ndarray:
        client = self._client()
        version = self.version
        body = self._request_body(version.model, texts, version.dimension if version.send_dimensions else None)
        try:
            result = client.get(self.url, method="POST", json=body)
        except SourceUnavailable as exc:
            raise EmbedderUnavailable(f"{exc}; nothing of this call was cached: run again once it answers") from None
        if not result.ok:
            raise EmbedderUnavailable(client.redact(self._refusal(result)))
        try:
            rows = self._vectors(json.loads(result.content))
            vectors = np.asarray(rows, dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderUnavailable(
                f"embedder {version.name}: {self.url} did not answer with {version.provider} embeddings "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise EmbedderUnavailable(
                f"embedder {version.name}: {self.url} returned {vectors.shape[0] if vectors.ndim else 0} vectors "
                f"for {len(texts)} texts"
            )
        if vectors.shape[1] != self.dimension:
            raise EmbedderMismatch(
                f"embedder version {version.name!r}: model {version.model!r} at {version.base_url} makes "
                f"{vectors.shape[1]}-d vectors, the registry declares dimension = {self.dimension}: fix the "
                "version (a new name, since a name never changes meaning) or the served model; nothing was cached"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)

    def _refusal(self, result: HttpResult) -> str:
        version = self.version
        text = result.content[:300].decode("utf-8", "replace").strip()
        hint = {
            401: f"the server refused the API key: check ${version.api_key_env}" if version.api_key_env
            else "the server wants an API key: name its environment variable with api_key_env",
            403: f"the key in ${version.api_key_env} may not use model {version.model!r}",
            404: f"check base_url ({version.base_url}; an OpenAI-compatible one usually ends in /v1) and model "
            f"{version.model!r}",
        }.get(result.status, "the server refused the request")
        return f"embedder {version.name}: POST {self.url}: HTTP {result.status}: {hint}" + (f" ({text})" if text else "")
