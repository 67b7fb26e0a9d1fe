"""sync_documents: unchanged records cost a hash, not a parse or a write; a full pass counts as
done only once its archiving happened."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from ops_pipelines.ingest import ArchiveRefused, sync_documents
from ops_pipelines.kb import KnowledgeBase, schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.objects import FolderObjectStore, blob_key
from ops_pipelines.sources import (
    Extracted,
    FolderSource,
    RedmineSource,
    Source,
    SourceDocument,
    open_source,
    sha256_hex,
)


def test_unchanged_records_are_neither_parsed_nor_written(sqlite_url, corpus, tmp_path, monkeypatch):
    kb = KnowledgeBase(sqlite_url)
    objects = FolderObjectStore(tmp_path / "objects")
    container = kb.add_container("kb1", "folder", str(corpus), "hash-256@1")
    source = FolderSource(str(corpus))
    assert sync_documents(kb, objects, container, source).inserted == 5

    parsed: list[str] = []
    original = SourceDocument.extract

    def spy(self):
        parsed.append(self.key)
        return original(self)

    monkeypatch.setattr(SourceDocument, "extract", spy)
    writes: list[int] = []
    original_write = KnowledgeBase.write_documents
    monkeypatch.setattr(
        KnowledgeBase,
        "write_documents",
        lambda self, cid, batch, existing: (writes.append(len(batch)), original_write(self, cid, batch, existing)),
    )
    report = sync_documents(kb, objects, container, source)
    assert report.skipped == 5 and parsed == [] and writes == []

    (corpus / "beta.md").write_text("# Beta\n\nChanged.")
    report = sync_documents(kb, objects, container, source)
    assert (report.updated, report.skipped) == (1, 4)
    assert parsed == ["beta.md"] and writes == [1]
    kb.close()


def test_a_refused_full_pass_does_not_count_as_one(sqlite_url, redmine, tmp_path):
    """A full pass that the archive guards refuse archives nothing: the next ``auto`` sync makes a
    full pass again instead of reading incrementally for ``full_every``."""
    kb = KnowledgeBase(sqlite_url)
    objects = FolderObjectStore(tmp_path / "objects")
    location = RedmineSource.normalize_location(f"{redmine.url}?projects=ops&wiki=1")
    container = kb.add_container("ops", "redmine", location, "hash-256@1")
    source = open_source("redmine", location)
    try:
        assert sync_documents(kb, objects, container, source).mode == "full"  # the first pass
        due = utcnow() - timedelta(hours=25)  # a day later, a full pass is due again
        with kb.engine.begin() as conn:
            conn.execute(update(schema.source_state).values(full_synced_at=due))
        for issue in (101, 102, 103):  # 3 of 4 documents gone (a project archived by mistake?)
            redmine.delete_issue(issue)

        with pytest.raises(ArchiveRefused, match="max_archive_fraction"):
            sync_documents(kb, objects, container, source)
        assert kb.source_state(container.id).full_synced_at == due  # not done: still due
        assert kb.count_documents(container.id) == {"active": 4, "archived": 0}

        report = sync_documents(kb, objects, container, source, max_archive_fraction=1.0)
        assert (report.mode, report.archived) == ("full", 3)  # auto chose a full pass again
        assert kb.source_state(container.id).full_synced_at > utcnow() - timedelta(minutes=1)
        assert sync_documents(kb, objects, container, source).mode == "incremental"  # done: not due
    finally:
        source.close()
        kb.close()


class _Records(Source):
    """A source yielding the records it is given, whatever their size."""

    kind = "test"

    def __init__(self, records, **kwargs):
        super().__init__("/nowhere", **kwargs)
        self.records = records

    def check(self) -> None:
        pass

    def fingerprint(self) -> str:
        return ""

    def read(self):
        return iter(self.records)


def _record(key: str, size: int) -> SourceDocument:
    return SourceDocument(key, f"test:{key}", b"w " * (size // 2), None, lambda raw: Extracted(key, raw.decode()))


def test_records_over_the_document_limit_are_skipped_named_and_kept(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.delenv("OPS_SOURCE_MAX_DOCUMENT_BYTES", raising=False)
    kb = KnowledgeBase(sqlite_url)
    objects = FolderObjectStore(tmp_path / "objects")
    container = kb.add_container("kb1", "folder", "/nowhere", "hash-256@1")
    report = sync_documents(kb, objects, container, _Records([_record("small", 100), _record("grows", 100)]))
    assert report.inserted == 2

    records = [_record("small", 100), _record("grows", 4000), _record("new", 4000)]
    report = sync_documents(kb, objects, container, _Records(records, max_document_bytes=1000))
    assert (report.skipped, report.inserted, report.failed, report.archived) == (1, 0, 2, 0)
    assert [key for key, _ in report.failures] == ["grows", "new"]
    assert "4,000 bytes, over the document size limit of 1,000 bytes" in report.failures[0][1]
    states = kb.document_states(container.id)
    assert set(states) == {"small", "grows"} and states["grows"].status == "active"  # its last readable version
    assert not any(objects.exists(blob_key(sha256_hex(r.raw))) for r in records[1:])  # no blob kept
    kb.close()


def test_a_pass_holds_the_states_of_one_group_of_documents_at_a_time(sqlite_url, tmp_path, monkeypatch):
    """Document states are read per group of records, never the container's all at once, and
    what vanished from the source is still found and archived."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(45):
        (folder / f"doc{i:02}.md").write_text(f"# Doc {i}\n\nText {i}.")
    kb = KnowledgeBase(sqlite_url)
    objects = FolderObjectStore(tmp_path / "objects")
    container = kb.add_container("many", "folder", str(folder), "hash-256@1")
    asked: list[int | None] = []
    original = KnowledgeBase.document_states
    monkeypatch.setattr(
        KnowledgeBase,
        "document_states",
        lambda self, cid, keys=None: (asked.append(None if keys is None else len(keys)), original(self, cid, keys))[1],
    )
    assert sync_documents(kb, objects, container, FolderSource(str(folder)), batch_size=10).inserted == 45
    for i in range(40, 45):
        (folder / f"doc{i:02}.md").unlink()
    report = sync_documents(kb, objects, container, FolderSource(str(folder)), batch_size=10)
    assert (report.skipped, report.archived) == (40, 5)
    assert asked and None not in asked and max(asked) <= 10
    kb.close()


def test_the_keys_a_pass_saw_are_kept_as_digests_across_blocks(monkeypatch):
    from ops_pipelines.ingest import documents

    monkeypatch.setattr(documents._SeenKeys, "_BLOCK", 3)  # several sealed blocks and a pending tail
    seen = documents._SeenKeys()
    for key in ["a.md", "b.md", "c.md", "d.md", "b.md", "e.md", "f.md"]:
        seen.add(key)
    assert seen.count == 7
    assert seen.lacks(["a.md", "z.md", "f.md", "e.md", "y.md"]).tolist() == [False, True, False, False, True]
    assert documents._SeenKeys().lacks(["a.md"]).tolist() == [True]
