"""The knowledge-base store on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.kb import ContainerExists, ContainerNotFound, DocumentWrite, KnowledgeBase, schema
from ops_pipelines.kb.migrations import LATEST, SchemaTooNew, migrate


def _write(key: str, text: str) -> DocumentWrite:
    return DocumentWrite(
        source_key=key, title=key, uri=f"file:///{key}", raw_sha256="r" * 64,
        source_hash=f"s-{text}", content_hash=f"c-{text}", text=text, source_updated_at=None,
    )


def test_migrates_a_new_database_and_is_idempotent(kb_url):
    kb = KnowledgeBase(kb_url)
    try:
        with kb.engine.connect() as conn:
            assert conn.execute(select(schema.schema_version.c.version)).scalar_one() == LATEST
        assert migrate(kb.engine) == LATEST  # second run starts at the latest and does nothing
        with kb.engine.connect() as conn:
            assert len(conn.execute(select(schema.schema_version)).all()) == 1
    finally:
        kb.close()


def test_refuses_a_schema_newer_than_the_code(sqlite_url):
    kb = KnowledgeBase(sqlite_url)
    with kb.engine.begin() as conn:
        conn.execute(update(schema.schema_version).values(version=LATEST + 1))
    kb.close()
    with pytest.raises(SchemaTooNew, match="upgrade ops-pipelines"):
        KnowledgeBase(sqlite_url)


def test_containers(kb):
    created = kb.add_container("docs", "folder", "/srv/docs", "hash-256@1")
    assert kb.get_container("docs") == created
    assert kb.get_container(created.id) == created
    assert [c.slug for c in kb.list_containers()] == ["docs"]
    with pytest.raises(ContainerExists):
        kb.add_container("docs", "folder", "/other", "hash-256@1")
    with pytest.raises(ContainerNotFound, match="'nope' does not exist"):
        kb.get_container("nope")
    for bad in ("Docs", "a b", "../x", "", "-x", "x" * 64):
        with pytest.raises(ValueError, match="invalid container slug"):
            kb.add_container(bad, "folder", "/x", "hash-256@1")


def test_a_failed_chunk_batch_leaves_every_document_as_it_was(kb):
    c = kb.add_container("docs", "folder", "/srv/docs", "hash-256@1")
    kb.write_documents(c.id, [_write("a", "one"), _write("b", "two")], {})
    states = kb.document_states(c.id)
    a, b = states["a"].id, states["b"].id
    kb.replace_chunks(PARA, [(a, "c-one", [("h1", "old a")]), (b, "c-two", [("h2", "old b")])])

    # Second document's rows collide on (document_id, ordinal): the whole batch must roll back.
    with pytest.raises(IntegrityError):
        kb.replace_chunks(PARA, [(a, "c-one2", [("h3", "new a")]), (b, "c-two2", [("h4", "x")]), (b, "c-two2", [("h5", "y")])])
    assert sorted(r.text for r in kb.active_chunks(c.id, PARA)) == ["old a", "old b"]
    assert list(kb.documents_to_chunk(c.id, PARA)) == []  # the chunk set was not advanced either


def test_a_failed_document_batch_writes_nothing(kb):
    c = kb.add_container("docs", "folder", "/srv/docs", "hash-256@1")
    with pytest.raises(IntegrityError):
        kb.write_documents(c.id, [_write("a", "one"), _write("a", "dup")], {})
    assert kb.document_states(c.id) == {}


def test_embedding_cache_round_trip_and_first_writer_wins(kb):
    vectors = np.array([[0.6, 0.8], [1.0, 0.0]], dtype=np.float32)
    kb.put_embeddings("hash-2@1", ["h1", "h2"], vectors)
    kb.put_embeddings("hash-2@1", ["h1"], np.array([[0.0, 1.0]], dtype=np.float32))
    got = kb.get_embeddings("hash-2@1", ["h1", "h2", "missing"])
    assert set(got) == {"h1", "h2"}
    np.testing.assert_array_equal(got["h1"], vectors[0])
    assert kb.get_embeddings("other@1", ["h1"]) == {}


def test_missing_embeddings_are_per_version_and_distinct(kb):
    c = kb.add_container("docs", "folder", "/srv/docs", "hash-256@1")
    kb.write_documents(c.id, [_write("a", "one"), _write("b", "two")], {})
    states = kb.document_states(c.id)
    kb.replace_chunks(PARA, [(states["a"].id, "c-one", [("same", "t")]), (states["b"].id, "c-two", [("same", "t"), ("h2", "u")])])
    assert missing(kb, c, "v@1") == [("same", "t"), ("h2", "u")]  # distinct within a page
    # A page at a time; a hash another page met again is skipped once its vector is cached.
    assert [len(page) for page in kb.chunk_texts(c.id, PARA, "v@1", batch=1)] == [1, 1, 1]
    cached = []
    for page in kb.chunk_texts(c.id, PARA, "v@1", batch=1):
        cached += [h for h, _ in page]
        kb.put_embeddings("v@1", [h for h, _ in page], np.ones((len(page), 2), dtype=np.float32))
    assert cached == ["same", "h2"]
    with kb.engine.begin() as conn:
        conn.execute(schema.embeddings.delete().where(schema.embeddings.c.chunk_hash == "h2"))
    assert missing(kb, c, "v@1") == [("h2", "u")]
    assert len(missing(kb, c, "w@1")) == 2
    assert missing(kb, c) == [("same", "t"), ("h2", "u")]  # every text, cached or not
    kb.set_document_status([states["b"].id], "archived")
    assert missing(kb, c, "v@1") == []
    assert kb.count_documents(c.id) == {"active": 1, "archived": 1}


def test_snapshot_sees_one_state_while_another_connection_writes(kb):
    """Counts read inside one snapshot do not move when a sync commits meanwhile (SQLite and PostgreSQL)."""
    from sqlalchemy import delete

    container = kb.add_container("snap", "folder", "/nowhere", "hash-256@1")
    kb.write_documents(container.id, [_write(f"d{i}", f"text {i}") for i in range(4)], {})
    with kb.snapshot(container.id, PARA) as snap:
        before = snap.count("documents")
        other = KnowledgeBase(kb.url)
        try:
            with other.engine.begin() as conn:
                conn.execute(delete(schema.documents).where(schema.documents.c.source_key == "d0"))
        finally:
            other.close()
        assert snap.count("documents") == before == 4
    assert kb.count_documents(container.id)["active"] == 3


def test_source_state_and_breaker_columns(kb):
    from datetime import timedelta

    from ops_pipelines.kb.clock import utcnow

    c = kb.add_container("ops", "redmine", "https://r.example.com?projects=ops&wiki=0", "hash-256@1")
    fresh = kb.source_state(c.id)
    assert (fresh.state, fresh.failures, fresh.full_synced_at, fresh.opened_until) == ({}, 0, None, None)
    kb.save_source_state(c.id, {"issues_updated_on": {"ops": "2026-03-01T08:04:00Z"}})
    assert kb.source_state(c.id).full_synced_at is None
    kb.save_source_state(c.id, {"issues_updated_on": {"ops": "2026-03-01T08:05:00Z"}})
    kb.record_full_pass(c.id)
    saved = kb.source_state(c.id)
    assert saved.state == {"issues_updated_on": {"ops": "2026-03-01T08:05:00Z"}}
    assert saved.full_synced_at.tzinfo is not None and utcnow() - saved.full_synced_at < timedelta(minutes=1)

    assert kb.record_source_failure(c.id, "HTTP 503") == 1
    assert kb.record_source_failure(c.id, "HTTP 504") == 2
    until = utcnow() + timedelta(minutes=15)
    kb.open_breaker(c.id, until)
    failing = kb.source_state(c.id)
    assert (failing.failures, failing.last_error, failing.opened_until) == (2, "HTTP 504", until)
    assert failing.state == saved.state  # the breaker leaves the cursor alone
    kb.record_source_success(c.id)
    closed = kb.source_state(c.id)
    assert (closed.failures, closed.opened_until, closed.last_error) == (0, None, None)
    kb.delete_container(c.id)  # the row goes with its container
    assert kb.source_state(c.id).state == {}


def missing(kb, container, version=None) -> list[tuple[str, str]]:
    return [row for page in kb.chunk_texts(container.id, PARA, version) for row in page]


def test_chunk_streams_read_a_batch_at_a_time(kb):
    c = kb.add_container("docs", "folder", "/srv/docs", "hash-256@1")
    kb.write_documents(c.id, [_write(k, k) for k in "abc"], {})
    states = kb.document_states(c.id)
    assert [len(page) for page in kb.documents_to_chunk(c.id, PARA, batch=2)] == [2, 1]
    kb.replace_chunks(PARA, [(states[k].id, f"c-{k}", [(f"h{k}{i}", f"{k}{i}") for i in range(2)]) for k in "abc"])
    assert list(kb.documents_to_chunk(c.id, PARA)) == []
    kb.put_embeddings("v@1", ["ha0"], np.ones((1, 2), dtype=np.float32))
    keys = [row for page in kb.chunk_keys(c.id, PARA, batch=4) for row in page]
    assert sorted((r[2], r[1]) for r in keys) == sorted((f"h{k}{i}", i) for k in "abc" for i in range(2))
    pages = list(kb.chunk_points(c.id, PARA, "v@1", batch=4))
    assert [len(p) for p in pages] == [4, 2]
    rows = [r for p in pages for r in p]
    assert [(r.source_key, r.ordinal, r.text) for r in rows] == [(k, i, f"{k}{i}") for k in "abc" for i in range(2)]
    assert [r.vector is not None for r in rows] == [True] + [False] * 5
    only_b = [r for p in kb.chunk_points(c.id, PARA, "v@1", document_ids={states["b"].id}) for r in p]
    assert [r.text for r in only_b] == ["b0", "b1"]


def test_last_synced_at_is_aware_utc_on_both_databases(kb):
    from datetime import UTC, datetime

    container = kb.add_container("kb1", "folder", "/tmp/x", "hash-256@1")
    assert kb.get_container("kb1").last_synced_at is None
    marked = kb.mark_synced(container.id)
    read = kb.get_container("kb1").last_synced_at
    assert read.tzinfo is not None and read.utcoffset().total_seconds() == 0
    assert read == marked  # comparable with an aware datetime, and the same moment
    assert [c.last_synced_at for c in kb.list_containers()] == [marked]

    earlier = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # an import records when its content was synced
    assert kb.mark_synced(container.id, at=earlier) == earlier
    assert kb.get_container(container.id).last_synced_at == earlier


def test_a_sqlite_knowledge_base_locked_too_long_is_an_operator_error(sqlite_url, tmp_path, monkeypatch):
    """Another writer (here a raw connection in a write transaction) holds the lock past the busy
    timeout: one message saying so and what to do, not a driver traceback."""
    import sqlite3

    from ops_pipelines.errors import OperatorError
    from ops_pipelines.kb import store

    KnowledgeBase(sqlite_url).close()  # migrated
    monkeypatch.setattr(store, "_BUSY_TIMEOUT_MS", 100)
    kb = KnowledgeBase(sqlite_url)
    holder = sqlite3.connect(tmp_path / "kb.sqlite")
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(store.KnowledgeBaseBusy, match=r"stayed locked by another writer for 0.1 s.*run this again") as caught:
            kb.add_container("docs", "folder", str(tmp_path), "hash-256@1")
        assert isinstance(caught.value, OperatorError)
        holder.rollback()
        assert kb.add_container("docs", "folder", str(tmp_path), "hash-256@1").slug == "docs"  # free again: it works
    finally:
        holder.close()
        kb.close()
