"""The container snapshot's streamed rows, on SQLite and PostgreSQL: what SQLAlchemy would give,
a batch at a time, from the one transaction."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import delete, select

from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.kb import DocumentWrite, schema
from ops_pipelines.kb import snapshot as snapshot_module


@pytest.fixture
def container(kb):
    """Five documents (two with a source time), three chunks each, vectors for all but one."""
    container = kb.add_container("snap", "folder", "/nowhere", "v@1")
    kb.write_documents(container.id, [
        DocumentWrite(
            source_key=f"k{i}", title=f"t{i}", uri=f"file:///k{i}", raw_sha256=f"{i}" * 64,
            source_hash=f"s{i}", content_hash=f"c{i}", text=f"text {i} \"quoted\" é",
            source_updated_at=datetime(2026, 3, i + 1, 8, 4, 5, 123456 * (i % 2), tzinfo=timezone.utc) if i < 2 else None,
        )
        for i in range(5)
    ], {})
    ids = {key: state.id for key, state in kb.document_states(container.id).items()}
    kb.replace_chunks(PARA, [(ids[f"k{i}"], f"c{i}", [(f"h{i}{n}", f"chunk {i}.{n}") for n in range(3)]) for i in range(5)])
    hashes = [f"h{i}{n}" for i in range(5) for n in range(3)][:-1]
    kb.put_embeddings("v@1", hashes, np.arange(len(hashes) * 4, dtype="<f4").reshape(-1, 4))
    return container


def _through_sqlalchemy(kb, query) -> list[tuple]:
    with kb.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def test_rows_are_sqlalchemys_in_batches(kb, container, monkeypatch):
    monkeypatch.setattr(snapshot_module, "BATCH", 4)
    with kb.snapshot(container.id, PARA) as snap:
        documents = list(snap.documents())
        chunks = list(snap.chunks("v@1"))
        plain_chunks = [row for rows in snap.chunks() for row in rows]
        blobs = list(snap.blob_hashes())
    assert [len(rows) for rows in documents] == [4, 1] and [len(rows) for rows in chunks] == [4, 4, 4, 3]
    d, e = schema.documents.c, schema.embeddings.c
    expected = _through_sqlalchemy(kb, select(
        d.id, d.source_key, d.title, d.uri, d.raw_sha256, d.source_hash, d.content_hash, d.source_updated_at, d.text,
        d.fields,
    ).where(d.container_id == container.id).order_by(d.source_key))
    assert [row for rows in documents for row in rows] == expected
    assert isinstance(expected[0][7], datetime) and expected[2][7] is None
    vectors = [row[-1] for rows in chunks for row in rows]
    assert all(type(v) is bytes for v in vectors[:-1]) and vectors[-1] is None  # bytes on PostgreSQL too
    by_hash = dict(_through_sqlalchemy(kb, select(e.chunk_hash, e.vector)))
    assert [row[:-1] for rows in chunks for row in rows] == plain_chunks
    assert [(row[3], row[-1]) for rows in chunks for row in rows] == [(h, by_hash.get(h)) for _, _, _, h, _ in plain_chunks]
    assert [(row[1], row[2]) for row in plain_chunks] == [(f"k{i}", n) for i in range(5) for n in range(3)]
    assert blobs == sorted(f"{i}" * 64 for i in range(5))


def test_streamed_rows_see_the_snapshot_while_another_connection_writes(kb, container):
    with kb.snapshot(container.id, PARA) as snap:
        before = snap.count("documents")
        with kb.engine.begin() as conn:  # another connection of the pool
            conn.execute(delete(schema.documents).where(schema.documents.c.source_key == "k0"))
        assert [row[1] for rows in snap.documents() for row in rows] == [f"k{i}" for i in range(5)]
        assert len([row for rows in snap.chunks("v@1") for row in rows]) == 15 and before == 5
    assert kb.count_documents(container.id)["active"] == 4


def test_a_reader_that_stops_part_way_leaves_the_snapshot_closable(kb, container, monkeypatch):
    """A failed export leaves a batch generator half read: its cursor is closed while the
    transaction lasts (a PostgreSQL server-side cursor cannot be closed after it)."""
    monkeypatch.setattr(snapshot_module, "BATCH", 2)
    with pytest.raises(RuntimeError, match="failed part way"), kb.snapshot(container.id, PARA) as snap:
        batches = snap.chunks("v@1")
        next(batches)
        raise RuntimeError("failed part way")
    batches.close()  # the generator's own cleanup, after the transaction: nothing to do
    with kb.snapshot(container.id, PARA) as snap:
        assert snap.count("chunks") == 15
