"""Served embedding models: the real infinity-emb over its OpenAI-compatible API (directly and
behind a fault-injecting proxy), and Ollama's native API on a server speaking its JSON."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from ops_pipelines.chunking import chunk_text
from ops_pipelines.embedders import load_embedder
from ops_pipelines.embedders.hashing import HashingEmbedder
from ops_pipelines.embedders.registry import get_version
from ops_pipelines.embedders.served import EmbedderMismatch, EmbedderUnavailable, ServedEmbedder, batches
from ops_pipelines.ingest import embed_chunks
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.sources.http import HttpPolicy
from ops_pipelines_tests.embedding_servers import SERVED_MODEL, EmbeddingProxy, FakeOllama

REPO = Path(__file__).resolve().parents[2]


def served_registry(path: Path, **versions: dict) -> Path:
    """A registry file of ``name -> keys`` (strings quoted, the rest as TOML literals)."""
    lines = []
    for name, keys in versions.items():
        lines.append(f'[versions."{name}"]')
        for key, value in keys.items():
            literal = f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value
            lines.append(f"{key} = {literal}")
    path.write_text("\n".join(lines) + "\n")
    return path


def minilm_at(url: str, **keys) -> dict:
    return {"provider": "openai", "base_url": url, "model": SERVED_MODEL, "dimension": 384, **keys}


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """Write versions into OPS_EMBEDDERS_FILE; loopback may be reached."""
    monkeypatch.setenv("OPS_SOURCE_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("OPS_SOURCE_BACKOFF_MAX_S", "2")
    path = tmp_path / "embedders.toml"
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(path))

    def write(**versions):
        return served_registry(path, **versions)

    return write


def docs_chunks(limit: int = 120) -> list[str]:
    texts = []
    for path in sorted((REPO / "docs").glob("*.md")):
        texts += chunk_text(path.read_text())
    return texts[:limit]


def test_requests_are_cut_by_count_and_by_size():
    texts = ["a" * 10, "b" * 10, "c" * 50, "d" * 5, "e" * 5, "f" * 5]
    assert [len(b) for b in batches(texts, 2, 1000)] == [2, 2, 2]
    assert [[len(t) for t in b] for b in batches(texts, 10, 30)] == [[10, 10], [50], [5, 5, 5]]


def test_infinity_serves_the_vectors_of_the_in_process_model(infinity, registry):
    registry(**{"minilm-served@1": minilm_at(infinity.url, batch_size=16, in_flight=2)})
    texts = docs_chunks()
    served = load_embedder("minilm-served@1").embed(texts)
    local = load_embedder("minilm-l6-v2@1").embed(texts)
    assert served.shape == local.shape == (len(texts), 384)
    cosines = (served * local).sum(axis=1)
    assert cosines.min() >= 0.999, cosines.min()


def test_requests_go_in_flight_at_once(registry):
    server = FakeOllama({"nomic-embed-text": 64})
    both_in = threading.Barrier(2, timeout=10)
    server.on_request = lambda request: both_in.wait()  # each request waits for another one in flight
    try:
        registry(**{"nomic@1": {"provider": "ollama", "base_url": server.url, "model": "nomic-embed-text",
                                "dimension": 64, "batch_size": 3, "in_flight": 2}})
        vectors = load_embedder("nomic@1").embed([f"text {i}" for i in range(12)])
    finally:
        server.close()
    assert len(server.requests_to("/api/embed")) == 4
    np.testing.assert_allclose(vectors, HashingEmbedder(64).embed([f"text {i}" for i in range(12)]), atol=1e-6)


@pytest.mark.parametrize(
    ("fault", "kwargs"),
    [("status", {"status": 500}), ("status", {"status": 503}), ("slow", {"seconds": 3.0}), ("drop", {})],
)
def test_transient_faults_of_the_served_model_are_retried(infinity, registry, fault, kwargs):
    proxy = EmbeddingProxy(f"http://127.0.0.1:{infinity.port}")
    try:
        registry(**{"minilm-served@1": minilm_at(f"{proxy.url}/v1", timeout_s=1)})
        proxy.fail(fault, times=2, **kwargs)
        vectors = load_embedder("minilm-served@1").embed(["rolling back a release", "restoring a backup"])
        statuses = [r.status for r in proxy.requests_to("/v1/embeddings")]
    finally:
        proxy.close()
    assert vectors.shape == (2, 384)
    assert len(statuses) == 3 and statuses[-1] == 200


def test_a_429_waits_as_long_as_retry_after_says(infinity, registry):
    proxy = EmbeddingProxy(f"http://127.0.0.1:{infinity.port}")
    registry(**{"minilm-served@1": minilm_at(f"{proxy.url}/v1")})
    slept = []
    try:
        proxy.fail("status", status=429, retry_after="2")
        embedder = ServedEmbedder(get_version("minilm-served@1"), HttpPolicy.from_env(), sleep=slept.append)
        assert embedder.embed(["a question"]).shape == (1, 384)
    finally:
        proxy.close()
    assert slept == [2.0]


def test_a_dimension_other_than_the_registry_is_refused_before_anything_is_cached(infinity, registry, kb, corpus):
    from ops_pipelines.ingest import chunk_documents, sync_documents
    from ops_pipelines.objects import FolderObjectStore
    from ops_pipelines.sources import open_source

    registry(**{"minilm-wrong@1": minilm_at(infinity.url, dimension=256)})
    container = kb.add_container("wrong", "folder", str(corpus), "minilm-wrong@1")
    sync_documents(kb, FolderObjectStore(corpus.parent / "objects"), container, open_source("folder", str(corpus)))
    chunk_documents(kb, container)
    with pytest.raises(EmbedderMismatch, match="makes 384-d vectors, the registry declares dimension = 256"):
        embed_chunks(kb, container, load_embedder, "minilm-wrong@1")
    assert cached(kb, "minilm-wrong@1") == 0


def test_a_served_model_stopped_mid_run_fails_clearly_and_loses_nothing(infinity, registry, kb, tmp_path):
    """The server goes away part way through: the step fails with one clear message and caches
    nothing of the page it was on; the next run (the server back, at another address) embeds it all."""
    from ops_pipelines.ingest import chunk_documents, sync_documents
    from ops_pipelines.objects import FolderObjectStore
    from ops_pipelines.sources import open_source

    source = tmp_path / "many"
    source.mkdir()
    for i in range(20):
        paragraphs = (f"Paragraph {i}.{p} " + "about backups and restores " * 26 for p in range(6))
        (source / f"doc{i:02}.md").write_text("\n\n".join(paragraphs))  # a chunk each: 120 in all
    proxy = EmbeddingProxy(f"http://127.0.0.1:{infinity.port}")
    registry(**{"minilm-served@1": minilm_at(f"{proxy.url}/v1", batch_size=8, in_flight=1)})
    container = kb.add_container("stopped", "folder", str(source), "minilm-served@1")
    sync_documents(kb, FolderObjectStore(tmp_path / "objects"), container, open_source("folder", str(source)))
    active = chunk_documents(kb, container).active_chunks

    def stop_after_three_requests(request):
        if len(proxy.requests_to("/v1/embeddings")) == 3:
            proxy.fail("drop", times=100)  # the requests after this one find no server

    proxy.on_request = stop_after_three_requests
    try:
        with pytest.raises(EmbedderUnavailable) as failure:
            embed_chunks(kb, container, load_embedder, "minilm-served@1", batch_size=16)
    finally:
        proxy.close()
    message = str(failure.value)
    assert "connection failed" in message and "nothing of this call was cached" in message
    assert cached(kb, "minilm-served@1") == 0
    back = EmbeddingProxy(f"http://127.0.0.1:{infinity.port}")
    try:
        registry(**{"minilm-served@1": minilm_at(f"{back.url}/v1", batch_size=8)})
        report = embed_chunks(kb, container, load_embedder, "minilm-served@1")
    finally:
        back.close()
    assert report.computed == active == cached(kb, "minilm-served@1") == 120


def test_the_api_key_goes_in_a_header_and_never_into_messages(registry, monkeypatch):
    server = FakeOllama({"m": 16})
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("EMBEDDINGS_KEY", secret)
    try:
        registry(**{"keyed@1": {"provider": "openai", "base_url": server.url, "model": "m", "dimension": 16,
                                "api_key_env": "EMBEDDINGS_KEY"}})
        with pytest.raises(EmbedderUnavailable) as failure:  # FakeOllama has no /embeddings: a 404
            load_embedder("keyed@1").embed(["x"])
        (request,) = server.requests
    finally:
        server.close()
    assert request.headers["authorization"] == f"Bearer {secret}"
    assert "HTTP 404" in str(failure.value) and "check base_url" in str(failure.value)
    assert secret not in str(failure.value)


def test_a_missing_api_key_variable_is_named(registry, monkeypatch):
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    registry(**{"keyed@1": {"provider": "openai", "base_url": "https://api.example.com/v1", "model": "m",
                            "dimension": 16, "api_key_env": "NOT_SET_KEY"}})
    with pytest.raises(EmbedderUnavailable, match=r"\$NOT_SET_KEY, which is not set"):
        load_embedder("keyed@1")


def test_a_served_model_on_a_host_not_allowed_is_refused_without_a_request(registry, monkeypatch):
    monkeypatch.setenv("OPS_SOURCE_ALLOWED_HOSTS", "example.com")
    registry(**{"far@1": {"provider": "openai", "base_url": "http://10.1.2.3:8000/v1", "model": "m", "dimension": 8}})
    with pytest.raises(EmbedderUnavailable, match="OPS_SOURCE_ALLOWED_HOSTS"):
        load_embedder("far@1").embed(["x"])


def test_ollama_native_api(registry):
    server = FakeOllama({"nomic-embed-text": 32})
    try:
        registry(**{"nomic@1": {"provider": "ollama", "base_url": server.url, "model": "nomic-embed-text",
                                "dimension": 32, "batch_size": 2}})
        vectors = load_embedder("nomic@1").embed(["one", "two", "three"])
        registry(**{"nomic@1": {"provider": "ollama", "base_url": server.url, "model": "nomic-embed-text:v9",
                                "dimension": 32}})
        with pytest.raises(EmbedderUnavailable, match=r"HTTP 404.*not found, try pulling it first"):
            load_embedder("nomic@1").embed(["one"])
    finally:
        server.close()
    np.testing.assert_allclose(vectors, HashingEmbedder(32).embed(["one", "two", "three"]), atol=1e-6)
    assert sorted(server.inputs) == ["one", "three", "two"]  # two requests in flight: any order


def test_prompts_are_put_before_documents_and_queries(registry):
    server = FakeOllama({"nomic-embed-text": 32})
    try:
        registry(**{"nomic@1": {"provider": "ollama", "base_url": server.url, "model": "nomic-embed-text",
                                "dimension": 32, "document_prompt": "search_document: ",
                                "query_prompt": "search_query: "}})
        embedder = load_embedder("nomic@1")
        embedder.embed(["a chunk"])
        embedder.embed_queries(["a question"])
    finally:
        server.close()
    assert server.inputs == ["search_document: a chunk", "search_query: a question"]
    assert get_version("nomic@1").query_prompt == "search_query: "


def test_loading_a_served_version_sends_nothing(registry):
    server = FakeOllama({"m": 8})
    try:
        registry(**{"m@1": {"provider": "ollama", "base_url": server.url, "model": "m", "dimension": 8}})
        load_embedder("m@1")
        assert server.requests == []
    finally:
        server.close()


def cached(kb: KnowledgeBase, version: str) -> int:
    from sqlalchemy import func, select

    from ops_pipelines.kb import schema

    e = schema.embeddings.c
    with kb.engine.connect() as conn:
        return conn.execute(select(func.count()).where(e.embedder_version == version)).scalar()
