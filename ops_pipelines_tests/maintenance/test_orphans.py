"""Orphan points, collections and blobs, injected into really synced containers and repaired."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import delete

from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.embedders import load_embedder
from ops_pipelines.ingest.collection import chunk_payload
from ops_pipelines.kb import schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.maintenance import (
    CHUNK_WITHOUT_POINT,
    POINT_WITHOUT_CHUNK,
    delete_orphan_blobs,
    drop_orphan_collections,
    find_orphans,
    repair_orphans,
)
from ops_pipelines.maintenance.orphans import expected_rows
from ops_pipelines.vectors import generation_name
from ops_pipelines_tests.maintenance.conftest import objects_of, refresh


@pytest.fixture
def damaged(synced, kb_of):
    """The live collection of ``docs`` lost the point of one chunk and gained a stray point."""
    kb = kb_of
    container = kb.get_container("docs")
    with synced.vector_store() as store:
        live = kb.live_generation(container.id).collection
        expected = expected_rows(kb, container, PARA)
        lost_id = min(expected)
        stray_id = str(uuid.uuid4())
        store.delete(live, [lost_id])
        store.upsert(live, [stray_id], np.full((1, 256), 0.1), [{"source_key": "gone.md", "ordinal": 3}])
        yield kb, store, container, live, expected, lost_id, stray_id


def test_orphans_in_both_directions_are_found_and_repaired(damaged):
    kb, store, container, live, expected, lost_id, stray_id = damaged
    lost = expected[lost_id]

    found = find_orphans(kb, store)
    assert sorted(found[["kind", "point_id"]].itertuples(index=False, name=None)) == [
        (CHUNK_WITHOUT_POINT, lost_id),
        (POINT_WITHOUT_CHUNK, stray_id),
    ]
    by_id = found.set_index("point_id")
    assert tuple(by_id.loc[lost_id, ["container", "collection", "source_key"]]) == ("docs", live, lost.source_key)
    assert by_id.loc[lost_id, "ordinal"] == lost.ordinal
    assert (by_id.loc[stray_id, "source_key"], by_id.loc[stray_id, "ordinal"]) == ("gone.md", 3)

    dry = repair_orphans(kb, store, dry_run=True)
    assert (dry.deleted, dry.written) == (1, 1)
    assert sorted(dry.table.action) == ["would delete", "would write"]
    assert stray_id in store.point_ids(live) and lost_id not in store.point_ids(live)

    report = repair_orphans(kb, store)
    assert (report.deleted, report.written, report.embedded, report.unrepaired) == (1, 1, 0, 0)
    assert store.point_ids(live) == set(expected)
    (point,) = store.retrieve(live, [lost_id], with_vectors=True)
    assert point.payload == chunk_payload(container, lost)
    cached = kb.get_embeddings("hash-256@1", [lost.content_hash])[lost.content_hash]
    assert np.allclose(point.vector, cached)

    assert find_orphans(kb, store).empty
    assert repair_orphans(kb, store).points == ()


def test_a_chunk_whose_vector_is_not_cached_is_reported_or_embedded(damaged):
    kb, store, _, live, expected, lost_id, _ = damaged
    e = schema.embeddings.c
    with kb.engine.begin() as conn:
        conn.execute(delete(schema.embeddings).where(e.chunk_hash == expected[lost_id].content_hash))

    report = repair_orphans(kb, store)
    assert (report.deleted, report.written, report.unrepaired) == (1, 0, 1)
    action = report.table.set_index("point_id").loc[lost_id, "action"]
    assert action.startswith("not repaired: no cached hash-256@1 vector")
    assert lost_id not in store.point_ids(live)

    loaded = []

    def loader(version):
        loaded.append(version)
        return load_embedder(version)

    dry = repair_orphans(kb, store, load_embedder=loader, dry_run=True)
    assert list(dry.table.action) == ["would embed and write"] and loaded == []
    report = repair_orphans(kb, store, load_embedder=loader)
    assert (report.embedded, report.written, report.unrepaired) == (1, 1, 0)
    assert loaded == ["hash-256@1"]
    assert store.point_ids(live) == set(expected)
    assert find_orphans(kb, store).empty


def test_a_live_collection_missing_from_qdrant_is_rebuilt_from_the_cache(synced, kb_of):
    container = kb_of.get_container("docs")
    with synced.vector_store() as store:
        live = kb_of.live_generation(container.id).collection
        store.drop_collection(live)
        found = find_orphans(kb_of, store)
        assert set(found.kind) == {CHUNK_WITHOUT_POINT} and len(found) == kb_of.count_active_chunks(container.id, PARA)
        repair_orphans(kb_of, store)
        assert store.point_ids(live) == set(expected_rows(kb_of, container, PARA))


def test_orphan_collections_are_dropped_and_referenced_ones_kept(synced, kb_of, extra_embedders):
    refresh(synced, "docs", "hash-64@1")  # g1 retired (kept for rollback), g2 live
    leftovers = [generation_name("docs", "hash-256@2", 3), generation_name("restored", "hash-256@1", 1)]
    with synced.vector_store() as store:
        for name in [*leftovers, "notes"]:
            store.ensure_collection(name, 4)

        dry = drop_orphan_collections(kb_of, store, dry_run=True)
        assert sorted(dry.table.collection) == leftovers and set(dry.table.action) == {"would drop"}
        assert set(leftovers) <= set(store.collection_names())

        report = drop_orphan_collections(kb_of, store)
        assert sorted(c.collection for c in report.collections) == leftovers
        assert store.collection_names() == sorted(
            [generation_name("docs", "hash-256@1", 1), generation_name("docs", "hash-64@1", 2), "notes"]
        )
        assert drop_orphan_collections(kb_of, store).collections == ()


def test_blobs_no_document_refers_to_are_deleted_once_old_enough(synced, kb_of):
    objects = objects_of(synced)
    container = kb_of.get_container("docs")
    referenced = set(objects.list("blobs/"))
    archived = kb_of.document_states(container.id)["beta.md"]
    kb_of.set_document_status([archived.id], "archived")  # an archived document keeps its blob
    stray = objects.put_blob(hashlib.sha256(b"left by a dead sync").hexdigest(), b"left by a dead sync")
    objects.put_bytes("blobs/README", b"not a blob")

    young = delete_orphan_blobs(kb_of, objects)
    assert young.deleted == 0
    assert dict(zip(young.table.key, young.table.action, strict=True)) == {
        "blobs/README": "kept: not a blob key",
        stray: "kept: younger than 24 h",
    }

    later = utcnow() + timedelta(days=2)
    assert delete_orphan_blobs(kb_of, objects, now=later, dry_run=True).deleted == 1
    assert objects.exists(stray)
    report = delete_orphan_blobs(kb_of, objects, now=later)
    assert report.deleted == 1 and not objects.exists(stray)
    assert set(objects.list("blobs/")) == referenced | {"blobs/README"}
    assert delete_orphan_blobs(kb_of, objects, now=later).deleted == 0
