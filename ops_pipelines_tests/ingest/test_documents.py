"""sync_documents: unchanged records cost a hash, not a parse or a write; a full pass counts as\ndone only once its archiving happened."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from ops_pipelines.ingest import ArchiveRefused, sync_documents
from ops_pipelines.kb import KnowledgeBase, schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.sources import FolderSource, RedmineSource, SourceDocument, open_source


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
