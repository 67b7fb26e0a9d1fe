"""The embedder registry: the file in the repo, extended or overridden by OPS_EMBEDDERS_FILE."""

from __future__ import annotations

import pytest

from ops_pipelines.embedders import (
    DEFAULT_VERSION,
    InvalidRegistry,
    UnknownEmbedderVersion,
    chunker_of,
    get_version,
    load_embedder,
    versions,
)


def test_builtin_versions():
    assert set(versions()) == {"minilm-l6-v2@1", "minilm-l6-v2@2", "minilm-l6-v2-bm25@1", "hash-256@1"}
    minilm = get_version("minilm-l6-v2@1")
    assert (minilm.provider, minilm.dimension, minilm.model_path, minilm.chunker, minilm.window) == (
        "sentence-transformers", 384, None, "para-800@1", None
    )
    default = get_version(DEFAULT_VERSION)
    assert (default.name, default.chunker, default.window) == ("minilm-l6-v2@2", "minilm-tokens-254@1", 256)
    chunker = chunker_of(DEFAULT_VERSION)
    assert (chunker.max_tokens, chunker.overlap) == (254, 32)
    hybrid = get_version("minilm-l6-v2-bm25@1")
    assert (hybrid.sparse, hybrid.hybrid, hybrid.chunker, hybrid.min_score) == ("bm25", True, default.chunker, None)
    assert not default.hybrid


def test_env_file_adds_and_overrides_versions(tmp_path, monkeypatch):
    extra = tmp_path / "embedders.toml"
    extra.write_text(
        '[versions."hash-64@1"]\nprovider = "hashing"\ndimension = 64\n'
        '[versions."minilm-l6-v2@1"]\nprovider = "sentence-transformers"\ndimension = 384\nmodel_path = "/models/minilm"\n'
    )
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(extra))
    assert get_version("hash-64@1").dimension == 64
    assert load_embedder("hash-64@1").embed(["x"]).shape == (1, 64)
    assert get_version("minilm-l6-v2@1").model_path == "/models/minilm"
    assert get_version("hash-256@1").dimension == 256


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[versions."x@1"]\nprovider = "tei"\ndimension = 8\n', "provider must be one of"),
        ('[versions."x@1"]\nprovider = "openai"\ndimension = 8\nmodel = "m"\n', "base_url must be"),
        ('[versions."x@1"]\nprovider = "openai"\ndimension = 8\nbase_url = "ftp://h"\nmodel = "m"\n', "base_url must be"),
        ('[versions."x@1"]\nprovider = "ollama"\ndimension = 8\nbase_url = "http://h"\n', "model must name"),
        ('[versions."x@1"]\nprovider = "openai"\ndimension = 8\nbase_url = "http://h"\nmodel = "m"\napi_key = "sk-1"\n',
         "never written in the registry"),
        ('[versions."x@1"]\nprovider = "openai"\ndimension = 8\nbase_url = "http://h"\nmodel = "m"\napi_key_env = "a b"\n',
         "api_key_env must be"),
        ('[versions."x@1"]\nprovider = "openai"\ndimension = 8\nbase_url = "http://h"\nmodel = "m"\nin_flight = 0\n',
         "in_flight must be an integer from 1 to 64"),
        ('[versions."x@1"]\nprovider = "openai"\ndimension = 8\nbase_url = "http://h"\nmodel = "m"\ntimeout_s = -1\n',
         "timeout_s must be"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nbase_url = "http://h"\n', "unknown keys"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nquery_prompt = 3\n', "query_prompt must be a string"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 1\n', "dimension must be an integer"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = "8"\n', "dimension must be an integer"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nnormalize = false\n', "only normalize = true"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nchunker = "tokens-256@1"\n', "unknown chunker 'tokens-256@1'"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nchunker = "minilm-tokens-254@1"\n', "declare window"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nwindow = 512\n', "cuts by characters and can exceed the 512-token window"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nwindow = 200\nchunker = "minilm-tokens-254@1"\n',
         "take up to 256 tokens .* more than the model's window of 200"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nwindow = 256\nchunker = "minilm-tokens-254@1"\n'
         'document_prompt = "passage: "\n', "take up to 258 tokens"),
        ('[chunkers."t@1"]\nkind = "tokens"\ntokenizer = "/nowhere"\nmax_tokens = 100\n', "no tokenizer at /nowhere"),
        ('[chunkers."t@1"]\nkind = "tokens"\ntokenizer = "bundled-minilm"\nmax_tokens = 100\noverlap = 60\n',
         "overlap must be an integer from 0 to 50"),
        ('[chunkers."t@1"]\nkind = "words"\n', "kind must be tokens or paragraphs"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\ncolour = "red"\n', "unknown keys"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nsparse = "splade"\n', "sparse must be one of bm25"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nmin_score = "high"\n', "min_score must be a number"),
        ('[versions."noversion"]\nprovider = "hashing"\ndimension = 8\n', "<model>@<n>"),
        ("[versions\n", "embedder registry"),
    ],
)
def test_a_broken_registry_file_names_the_problem(tmp_path, monkeypatch, body, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(body)
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(bad))
    with pytest.raises(InvalidRegistry, match=message):
        versions()


def test_a_served_version_keeps_its_keys(tmp_path, monkeypatch):
    extra = tmp_path / "embedders.toml"
    extra.write_text(
        '[versions."nomic-embed-text@1"]\nprovider = "ollama"\ndimension = 768\nbase_url = "http://gpu-1:11434"\n'
        'model = "nomic-embed-text"\nbatch_size = 16\nin_flight = 4\ntimeout_s = 30\n'
        'query_prompt = "search_query: "\ndocument_prompt = "search_document: "\n'
    )
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(extra))
    v = get_version("nomic-embed-text@1")
    assert (v.provider, v.base_url, v.model, v.batch_size, v.in_flight, v.timeout_s, v.api_key_env) == (
        "ollama", "http://gpu-1:11434", "nomic-embed-text", 16, 4, 30.0, None
    )
    assert (v.query_prompt, v.document_prompt, v.batch_chars, v.send_dimensions) == (
        "search_query: ", "search_document: ", 100_000, False
    )


def test_missing_registry_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(tmp_path / "none.toml"))
    with pytest.raises(InvalidRegistry, match="none.toml"):
        versions()


def test_unknown_version_lists_the_known_ones():
    with pytest.raises(UnknownEmbedderVersion, match="known: hash-256@1, minilm-l6-v2-bm25@1, minilm-l6-v2@1, minilm-l6-v2@2"):
        get_version("gpt-9@1")


def test_a_served_version_shares_a_chunker_that_fits_its_declared_window(tmp_path, monkeypatch):
    extra = tmp_path / "embedders.toml"
    extra.write_text(
        '[versions."minilm-served@1"]\nprovider = "openai"\nbase_url = "http://127.0.0.1:7997/v1"\n'
        'model = "all-MiniLM-L6-v2"\ndimension = 384\nwindow = 256\nchunker = "minilm-tokens-254@1"\n'
    )
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(extra))
    assert chunker_of("minilm-served@1") == chunker_of("minilm-l6-v2@2")
