"""sync_documents: unchanged records cost a hash, not a parse or a write; a full pass counts as
done only once its archiving happened."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

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


def _fields(kb, container_id: str) -> dict[str, tuple[dict | None, int]]:
    """Source key -> (fields, fields revision) of each document."""
    d = schema.documents.c
    with kb.engine.connect() as conn:
        rows = conn.execute(select(d.source_key, d.fields, d.fields_revision).where(d.container_id == container_id))
        return {key: (None if fields is None else json.loads(fields), revision) for key, fields, revision in rows}


def _forget_fields(kb, container_id: str, *keys: str) -> None:
    """The documents as a sync before schema 9 left them: fields not known."""
    d = schema.documents.c
    with kb.engine.begin() as conn:
        chosen = (d.container_id == container_id) & d.source_key.in_(keys)
        conn.execute(update(schema.documents).where(chosen).values(fields=None))


def test_fields_that_change_alone_are_written_and_stamped_with_a_revision(kb, tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"id": "a", "text": "alpha", "team": "x", "lang": "en"}, {"id": "b", "text": "beta", "team": "y"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    objects = FolderObjectStore(tmp_path / "objects")
    container = kb.add_container("j", "jsonl", str(path), "hash-256@1", declared_fields=("team",))
    assert sync_documents(kb, objects, container, open_source("jsonl", str(path), fields=["team"])).inserted == 2
    assert _fields(kb, container.id) == {"a": ({"team": "x"}, 0), "b": ({"team": "y"}, 0)}

    rows[1]["team"] = "z"  # the line's bytes change, its text does not
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = sync_documents(kb, objects, container, open_source("jsonl", str(path), fields=["team"]))
    assert (report.updated, report.skipped) == (0, 2)
    assert _fields(kb, container.id) == {"a": ({"team": "x"}, 0), "b": ({"team": "z"}, 1)}

    # the same bytes, read with another declaration: nothing is parsed, the fields are written
    report = sync_documents(kb, objects, container, open_source("jsonl", str(path), fields=["team", "lang"]))
    assert (report.updated, report.skipped) == (0, 2)
    assert _fields(kb, container.id) == {"a": ({"lang": "en", "team": "x"}, 2), "b": ({"team": "z"}, 1)}
    assert kb.fields_revision(container.id) == 2
    sync_documents(kb, objects, container, open_source("jsonl", str(path), fields=["team", "lang"]))
    assert kb.fields_revision(container.id) == 2  # nothing changed: no new revision


def test_documents_synced_before_they_had_fields_get_them_at_the_next_sync(kb, corpus, tmp_path):
    objects = FolderObjectStore(tmp_path / "objects")
    container = kb.add_container("kb1", "folder", str(corpus), "hash-256@1")
    sync_documents(kb, objects, container, FolderSource(str(corpus)))
    _forget_fields(kb, container.id, "alpha.md", "notes/epsilon.txt")
    report = sync_documents(kb, objects, container, FolderSource(str(corpus)))
    assert report.skipped == 5
    fields = _fields(kb, container.id)
    assert fields["alpha.md"] == ({"extension": "md", "path": "alpha.md"}, 1)
    assert fields["notes/epsilon.txt"] == ({"extension": "txt", "path": "notes/epsilon.txt"}, 1)
    assert fields["beta.md"][1] == 0


def test_a_remote_source_reads_again_the_records_whose_fields_are_not_known(kb, redmine, tmp_path):
    objects = FolderObjectStore(tmp_path / "objects")
    location = RedmineSource.normalize_location(f"{redmine.url}?projects=ops&wiki=1")
    container = kb.add_container("ops", "redmine", location, "hash-256@1")
    sync_documents(kb, objects, container, RedmineSource(location))
    _forget_fields(kb, container.id, "issues/101", "wiki/ops/Runbook_Restore")
    redmine.reset_log()
    report = sync_documents(kb, objects, container, RedmineSource(location), mode="full")
    assert (report.updated, report.skipped) == (0, 4)
    assert sorted(r.path for r in redmine.requests if r.path.startswith(("/issues/", "/projects/ops/wiki/R"))) == [
        "/issues/101.json", "/projects/ops/wiki/Runbook_Restore.json",
    ]
    fields = _fields(kb, container.id)
    assert fields["issues/101"][0]["status"] == "New" and fields["wiki/ops/Runbook_Restore"][0]["author"] == "Ada Ops"
