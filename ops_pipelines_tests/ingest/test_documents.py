"""sync_documents: unchanged records cost a hash, not a parse or a write."""

from __future__ import annotations

from ops_pipelines.ingest import sync_documents
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.sources import FolderSource, SourceDocument


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
