"""sync_documents: unchanged records cost a hash, not a parse or a write."""

from __future__ import annotations

from ops_pipelines.ingest import sync_documents
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.objects import FolderObjectStore, blob_key
from ops_pipelines.sources import Extracted, FolderSource, Source, SourceDocument, sha256_hex


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
