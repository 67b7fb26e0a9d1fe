"""Golden query sets: parsing, registration against a container's documents, versions."""

from __future__ import annotations

import pytest

from ops_pipelines.kb import DocumentWrite
from ops_pipelines.quality import InvalidGoldenSet, current_golden_set, parse_golden_set, register_golden_set


def test_a_set_takes_lists_and_graded_relevance():
    golden = parse_golden_set(
        '{"query": "undo a deployment", "relevant": ["rollback.md"]}\n\n'
        '{"id": "q2", "query": "copy a container", "relevant": {"export.md": 2, "backup.md": 1, "sync.md": 0}}\n'
    )
    assert [(q.id, q.relevant) for q in golden.queries] == [
        ("1", {"rollback.md": 1}), ("q2", {"export.md": 2, "backup.md": 1})
    ]
    assert golden.source_keys == {"rollback.md", "export.md", "backup.md"}
    assert golden.content_hash == parse_golden_set(
        '{"query": "undo a deployment", "relevant": ["rollback.md"]}\n\n'
        '{"id": "q2", "query": "copy a container", "relevant": {"export.md": 2, "backup.md": 1, "sync.md": 0}}\n'
    ).content_hash


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no queries"),
        ("not json\n", "line 1: not JSON"),
        ('{"query": "x"}\n', "relevant must be"),
        ('{"query": "", "relevant": ["a"]}\n', "query must be a non-empty string"),
        ('{"query": "x", "relevant": []}\n', "relevant must be"),
        ('{"query": "x", "relevant": {"a": 0}}\n', "at least one grade above 0"),
        ('{"query": "x", "relevant": {"a": 1.5}}\n', "relevant must be"),
        ('{"query": "x", "relevant": ["a"], "extra": 1}\n', "must be an object with query, relevant"),
        ('{"id": "a", "query": "x", "relevant": ["a"]}\n{"id": "a", "query": "y", "relevant": ["a"]}\n', "line 2: id 'a' repeats"),
    ],
)
def test_a_broken_set_names_the_line(text, message):
    with pytest.raises(InvalidGoldenSet, match=message):
        parse_golden_set(text, "golden.jsonl")


def _docs(kb, keys, archived=()):
    container = kb.add_container("docs", "folder", "/x", "hash-256@1")
    kb.write_documents(container.id, [
        DocumentWrite(key, "t", "u", "r" * 64, f"s{key}", f"c{key}", "text", None) for key in keys
    ], {})
    states = kb.document_states(container.id)
    kb.set_document_status([states[key].id for key in archived], "archived")
    return container


def test_a_set_naming_keys_the_container_lacks_is_refused_and_nothing_is_kept(kb):
    container = _docs(kb, ["a.md", "b.md", "gone.md"], archived=["gone.md"])
    text = '{"query": "x", "relevant": ["a.md", "missing.md"]}\n{"query": "y", "relevant": ["gone.md"]}\n'
    with pytest.raises(InvalidGoldenSet, match=r"names 2 source key\(s\) .* no active document for: gone.md, missing.md"):
        register_golden_set(kb, container, text, "golden.jsonl")
    assert current_golden_set(kb, container) is None


def test_versions_are_kept_by_content_hash_and_the_latest_is_in_use(kb):
    container = _docs(kb, ["a.md", "b.md"])
    first = '{"query": "x", "relevant": ["a.md"]}\n'
    second = first + '{"query": "y", "relevant": ["b.md"]}\n'
    assert register_golden_set(kb, container, first, "g1")[1] is True
    assert register_golden_set(kb, container, first, "g1")[1] is False  # the same text: already in use
    golden, added = register_golden_set(kb, container, second, "g2")
    assert added and current_golden_set(kb, container) == golden
    assert [v.queries for v in kb.golden_set_versions(container.id)] == [2, 1]


def test_the_shipped_golden_set_of_the_demo_corpus_matches_its_documents(kb, tmp_path):
    """bench/docs-golden.jsonl (bench/quality.py) names only documents of docs/, 40 queries or more."""
    from pathlib import Path

    from ops_pipelines.ingest import sync_documents
    from ops_pipelines.objects import FolderObjectStore
    from ops_pipelines.sources import open_source

    repo = Path(__file__).resolve().parents[2]
    container = kb.add_container("docs", "folder", str(repo / "docs"), "hash-256@1")
    sync_documents(kb, FolderObjectStore(tmp_path / "objects"), container, open_source("folder", str(repo / "docs")))
    golden_file = repo / "bench" / "docs-golden.jsonl"
    golden, added = register_golden_set(kb, container, golden_file.read_text(), str(golden_file))
    assert added and len(golden.queries) >= 40
