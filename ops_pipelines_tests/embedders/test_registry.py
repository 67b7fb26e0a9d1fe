"""The embedder registry: the file in the repo, extended or overridden by OPS_EMBEDDERS_FILE."""

from __future__ import annotations

import pytest

from ops_pipelines.embedders import InvalidRegistry, UnknownEmbedderVersion, get_version, load_embedder, versions


def test_builtin_versions():
    assert set(versions()) == {"minilm-l6-v2@1", "hash-256@1"}
    minilm = get_version("minilm-l6-v2@1")
    assert (minilm.provider, minilm.dimension, minilm.model_path, minilm.chunker) == (
        "sentence-transformers", 384, None, "para-800@1"
    )


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
        ('[versions."x@1"]\nprovider = "openai"\ndimension = 8\n', "provider must be one of"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 1\n', "dimension must be an integer"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = "8"\n', "dimension must be an integer"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nnormalize = false\n', "only normalize = true"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\nchunker = "tokens-256@1"\n', "chunker must be para-800@1"),
        ('[versions."x@1"]\nprovider = "hashing"\ndimension = 8\ncolour = "red"\n', "unknown keys"),
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


def test_missing_registry_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(tmp_path / "none.toml"))
    with pytest.raises(InvalidRegistry, match="none.toml"):
        versions()


def test_unknown_version_lists_the_known_ones():
    with pytest.raises(UnknownEmbedderVersion, match="known: hash-256@1, minilm-l6-v2@1"):
        get_version("gpt-9@1")
