"""The sync assets under real Dagster execution, on SQLite and PostgreSQL, with Qdrant local mode."""

from __future__ import annotations

import os

import pytest

from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.embedders.hashing import HashingEmbedder
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.vectors import EdgeVectorStore, point_id
from ops_pipelines_tests.conftest import step_failure_message


@pytest.fixture
def embedded_texts(monkeypatch) -> list[str]:
    """Every text the hashing embedder is asked to embed."""
    seen: list[str] = []
    original = HashingEmbedder.embed

    def spy(self, texts):
        seen.extend(texts)
        return original(self, texts)

    monkeypatch.setattr(HashingEmbedder, "embed", spy)
    return seen


def expected_point_ids(kb_url: str, slug: str) -> set[str]:
    kb = KnowledgeBase(kb_url)
    try:
        container = kb.get_container(slug)
        return {point_id(container.id, r.document_id, r.ordinal, r.content_hash) for r in kb.active_chunks(container.id, PARA)}
    finally:
        kb.close()


def live_point_ids(harness, slug: str) -> set[str]:
    collection = harness.serving(slug)
    assert collection is not None, "live alias missing"
    with harness.vector_store() as store:
        return store.point_ids(collection)


def top_keys(harness, slug: str, query: str, limit: int = 10) -> list[str]:
    """The source keys of the hits, by default every chunk of the test corpora, so that no tie in
    score falls at the cut (which of equal scores an engine returns first is its own)."""
    from ops_pipelines.search import search_container

    kb = KnowledgeBase(harness.kb_url)
    try:
        with harness.vector_store() as store:
            return [h.payload["source_key"] for h in search_container(kb, store, slug, query, limit)]
    finally:
        kb.close()


ZERO = dict(inserted=0, updated=0, skipped=0, archived=0, unarchived=0, failed=0)


def test_scripted_add_change_delete_restore(harness, corpus, embedded_texts):
    harness.add_container("kb1", corpus)

    first = harness.sync("kb1")
    assert harness.counts(first) == {**ZERO, "inserted": 5}
    active = harness.metadata(first, "chunks")["active_chunks"]
    assert len(embedded_texts) == active > 0
    assert harness.metadata(first, "live_collection")["points"] == active
    assert live_point_ids(harness, "kb1") == expected_point_ids(harness.kb_url, "kb1")
    assert top_keys(harness, "kb1", "glaciers ice mountain")[0] == "gamma.md"
    embedded_after_first = len(embedded_texts)  # the query above was embedded too

    # Unchanged, even with a new mtime: skipped, nothing embedded, nothing written to Qdrant.
    os.utime(corpus / "alpha.md", (1, 1))
    again = harness.sync("kb1")
    assert harness.counts(again) == {**ZERO, "skipped": 5}
    assert len(embedded_texts) == embedded_after_first
    assert harness.metadata(again, "embeddings")["computed"] == 0
    assert harness.metadata(again, "live_collection")["upserted"] == 0

    # One changed, one new: only their new chunk texts are embedded.
    (corpus / "beta.md").write_text("# Beta\n\nBeta now explains tandem bicycles and derailleurs.")
    (corpus / "zeta.md").write_text("# Zeta\n\nZeta is about zebras on the savanna.")
    changed = harness.sync("kb1")
    assert harness.counts(changed) == {**ZERO, "inserted": 1, "updated": 1, "skipped": 4}
    new_texts = embedded_texts[embedded_after_first:]
    assert sorted(new_texts) == sorted(
        ["# Beta\n\nBeta now explains tandem bicycles and derailleurs.", "# Zeta\n\nZeta is about zebras on the savanna."]
    )
    assert live_point_ids(harness, "kb1") == expected_point_ids(harness.kb_url, "kb1")
    assert harness.metadata(changed, "live_collection")["deleted"] == 1  # the old beta chunk

    # Deleted from the source: archived and its points removed.
    gamma = (corpus / "gamma.md").read_text()
    (corpus / "gamma.md").unlink()
    deleted = harness.sync("kb1")
    assert harness.counts(deleted) == {**ZERO, "archived": 1, "skipped": 5}
    assert "gamma.md" not in top_keys(harness, "kb1", "glaciers ice mountain", limit=6)
    assert live_point_ids(harness, "kb1") == expected_point_ids(harness.kb_url, "kb1")

    # Back again: unarchived, served from the embedding cache.
    embedded_before_restore = len(embedded_texts)  # after the query above
    (corpus / "gamma.md").write_text(gamma)
    restored = harness.sync("kb1")
    assert harness.counts(restored) == {**ZERO, "unarchived": 1, "skipped": 5}
    assert len(embedded_texts) == embedded_before_restore
    assert harness.metadata(restored, "embeddings")["computed"] == 0
    assert harness.metadata(restored, "live_collection")["upserted"] == 1
    assert live_point_ids(harness, "kb1") == expected_point_ids(harness.kb_url, "kb1")
    assert top_keys(harness, "kb1", "glaciers ice mountain")[0] == "gamma.md"


def test_counts_are_a_table_in_metadata(sqlite_harness, corpus):
    sqlite_harness.add_container("kb1", corpus)
    md = sqlite_harness.metadata(sqlite_harness.sync("kb1"), "source_documents")
    (record,) = md["sync_counts"].records
    assert record.data == {**ZERO, "inserted": 5}
    assert md["active_documents"] == 5


def test_same_text_in_two_containers_is_embedded_once(sqlite_harness, corpus, embedded_texts):
    sqlite_harness.add_container("one", corpus)
    sqlite_harness.add_container("two", corpus)
    sqlite_harness.sync("one")
    embedded = len(embedded_texts)
    second = sqlite_harness.sync("two")
    assert sqlite_harness.counts(second)["inserted"] == 5
    assert len(embedded_texts) == embedded
    assert sqlite_harness.metadata(second, "embeddings")["cached"] == sqlite_harness.metadata(second, "chunks")["active_chunks"]


def test_rerun_after_crash_between_db_write_and_upsert(harness, corpus, monkeypatch):
    harness.add_container("kb1", corpus)
    original_upsert = EdgeVectorStore.upsert
    calls = {"n": 0}

    def upsert_then_die(self, collection, ids, vectors, payloads):
        calls["n"] += 1
        original_upsert(self, collection, ids[:2], vectors[:2], payloads[:2])
        raise KeyboardInterrupt("simulated kill during the upsert")

    monkeypatch.setattr(EdgeVectorStore, "upsert", upsert_then_die)
    with pytest.raises(BaseException, match="simulated kill"):
        harness.sync("kb1")
    assert calls["n"] == 1
    assert len(live_point_ids(harness, "kb1")) == 2

    monkeypatch.setattr(EdgeVectorStore, "upsert", original_upsert)
    rerun = harness.sync("kb1")
    assert harness.counts(rerun) == {**ZERO, "skipped": 5}
    expected = expected_point_ids(harness.kb_url, "kb1")
    assert live_point_ids(harness, "kb1") == expected
    assert harness.metadata(rerun, "live_collection")["upserted"] == len(expected) - 2
    assert harness.metadata(rerun, "live_collection")["points"] == len(expected)
    # And once more: nothing left to do.
    assert harness.metadata(harness.sync("kb1"), "live_collection")["upserted"] == 0


def test_missing_source_root_fails_and_archives_nothing(harness, corpus, tmp_path):
    harness.add_container("kb1", corpus)
    harness.sync("kb1")
    moved = tmp_path / "moved"
    corpus.rename(moved)

    result = harness.sync("kb1", raise_on_error=False)
    assert not result.success
    assert "does not exist" in step_failure_message(result)
    kb = KnowledgeBase(harness.kb_url)
    try:
        assert kb.count_documents(kb.get_container("kb1").id) == {"active": 5, "archived": 0}
    finally:
        kb.close()
    assert live_point_ids(harness, "kb1") == expected_point_ids(harness.kb_url, "kb1")


def test_empty_source_is_refused_unless_allowed(sqlite_harness, corpus):
    sqlite_harness.add_container("kb1", corpus)
    sqlite_harness.sync("kb1")
    for path in list(corpus.rglob("*.*")):
        path.unlink()

    refused = sqlite_harness.sync("kb1", raise_on_error=False)
    assert not refused.success
    assert "refusing to archive them all" in step_failure_message(refused)

    allowed = sqlite_harness.sync("kb1", allow_empty_source=True)
    assert sqlite_harness.counts(allowed)["archived"] == 5
    assert sqlite_harness.metadata(allowed, "live_collection")["points"] == 0


def test_mass_archive_is_refused(sqlite_harness, corpus):
    sqlite_harness.add_container("kb1", corpus)
    sqlite_harness.sync("kb1")
    for name in ("alpha.md", "beta.md", "gamma.md"):
        (corpus / name).unlink()
    refused = sqlite_harness.sync("kb1", raise_on_error=False)
    assert "max_archive_fraction" in step_failure_message(refused)
    kb = KnowledgeBase(sqlite_harness.kb_url)
    try:
        assert kb.count_documents(kb.get_container("kb1").id)["archived"] == 0
    finally:
        kb.close()
    assert sqlite_harness.counts(sqlite_harness.sync("kb1", max_archive_fraction=1.0))["archived"] == 3


def test_unreadable_and_undecodable_files_are_skipped_and_named(sqlite_harness, corpus):
    sqlite_harness.add_container("kb1", corpus)
    sqlite_harness.sync("kb1")
    (corpus / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (corpus / "binary.md").write_bytes(b"abc\x00def")
    locked = corpus / "locked.md"
    locked.write_text("# Locked")
    locked.chmod(0)
    (corpus / "alpha.md").write_bytes(b"\xff\xfe broken now")
    try:
        result = sqlite_harness.sync("kb1")
    finally:
        locked.chmod(0o644)
    counts = sqlite_harness.counts(result)
    readable_as_root = os.access(locked, os.R_OK) and os.geteuid() == 0
    assert counts["failed"] == (3 if readable_as_root else 4)
    assert counts["archived"] == 0  # alpha.md is unreadable now, not gone: it keeps its old state
    assert counts["inserted"] == (1 if readable_as_root else 0)
    failures = {r.data["source_key"]: r.data["reason"] for r in sqlite_harness.metadata(result, "source_documents")["failures"].records}
    assert "not valid UTF-8" in failures["latin1.txt"]
    assert "NUL" in failures["binary.md"]
    assert "not valid UTF-8" in failures["alpha.md"]
    assert top_keys(sqlite_harness, "kb1", "apples orchards")[0] == "alpha.md"


@pytest.mark.timeout(120)  # the FIFO hung sync forever: fail instead
def test_links_fifos_and_oversized_files_are_named_and_nothing_of_them_is_kept(sqlite_harness, corpus, tmp_path):
    secret = "DB_PASSWORD=prod-secret-6f1c"
    outside = tmp_path / "some" / "where"
    outside.mkdir(parents=True)
    (outside / "prod.env").write_text(secret)
    (outside / "leak.md").write_text(f"# Leak\n\n{secret}")
    (corpus / "prod.txt").symlink_to(outside / "prod.env")
    (corpus / "linked").symlink_to(outside, target_is_directory=True)
    os.mkfifo(corpus / "pipe.md")
    (corpus / "big.txt").write_text("big " * 1000)
    sqlite_harness.add_container("kb1", corpus)
    result = sqlite_harness.sync("kb1", max_document_bytes=2000)
    assert sqlite_harness.counts(result) == dict(ZERO, inserted=5, failed=4)
    docs = sqlite_harness.metadata(result, "source_documents")
    assert docs["max_document_bytes"] == "2000"  # a setting, as text: the UI plots no flat line of it
    assert sqlite_harness.metadata(result, "embeddings")["dimension"] == "256"
    failures = {r.data["source_key"]: r.data["reason"] for r in docs["failures"].records}
    assert set(failures) == {"prod.txt", "linked", "pipe.md", "big.txt"}
    assert "symbolic link" in failures["prod.txt"] and "named pipe" in failures["pipe.md"]
    assert "4,000 bytes, over the document size limit of 2,000 bytes" in failures["big.txt"]
    # Nothing of the secret anywhere: documents, chunks, blobs, the collection.
    kb = sqlite_harness.kb()
    try:
        container = kb.get_container("kb1")
        assert set(kb.document_states(container.id)) == {"alpha.md", "beta.md", "gamma.md", "delta.md", "notes/epsilon.txt"}
        assert all(secret not in r.text for r in kb.active_chunks(container.id, PARA))
    finally:
        kb.close()
    assert not any(secret.encode() in p.read_bytes() for p in (sqlite_harness.home / "objects").rglob("*") if p.is_file())
    assert "prod.txt" not in top_keys(sqlite_harness, "kb1", "DB_PASSWORD prod secret")


def test_unknown_container_is_a_clear_error(sqlite_harness, corpus):
    from ops_pipelines.defs.partitions import containers_partitions

    sqlite_harness.instance.add_dynamic_partitions(containers_partitions.name, ["ghost"])
    result = sqlite_harness.sync("ghost", raise_on_error=False)
    assert not result.success
    assert "container 'ghost' does not exist" in step_failure_message(result)


def test_partition_not_registered_in_dagster_is_refused(sqlite_harness):
    with pytest.raises(Exception, match="nope"):
        sqlite_harness.sync("nope")
