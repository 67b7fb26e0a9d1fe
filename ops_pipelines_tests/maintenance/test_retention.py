"""Generation retention over every container, and pruning the embedding cache of retired versions."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from ops_pipelines.kb import schema
from ops_pipelines.maintenance import prune_embedding_cache, prune_old_generations
from ops_pipelines_tests.maintenance.conftest import refresh


def states(kb, slug: str) -> list[tuple[int, str]]:
    return [(g.number, g.state) for g in kb.generations(kb.get_container(slug).id)]


def cache_rows(kb) -> dict[str, int]:
    e = schema.embeddings.c
    with kb.engine.connect() as conn:
        return dict(conn.execute(select(e.embedder_version, func.count()).group_by(e.embedder_version)).all())


def test_generations_beyond_retention_are_dropped_but_never_the_served_one(synced, kb_of, corpus, extra_embedders):
    g1 = kb_of.generation(kb_of.get_container("docs").id, 1)
    g2 = refresh(synced, "docs", "hash-64@1")
    g3 = refresh(synced, "docs", "hash-256@2")
    synced.add_container("other", corpus)
    synced.sync("other")
    with synced.vector_store() as store:
        dry = prune_old_generations(kb_of, store, retention=2, dry_run=True)
        assert list(dry.table.collection) == [g1.collection] and list(dry.table.action) == ["would drop"]
        assert states(kb_of, "docs") == [(1, "retired"), (2, "retired"), (3, "live")]

        report = prune_old_generations(kb_of, store, retention=2)
        assert [(g.container, g.generation, g.embedder_version, g.state) for g in report.generations] == [
            ("docs", 1, "hash-256@1", "retired")
        ]
        assert states(kb_of, "docs") == [(1, "dropped"), (2, "retired"), (3, "live")]
        assert states(kb_of, "other") == [(1, "live")]
        assert g1.collection not in store.collection_names()
        assert {g2.collection, g3.collection} <= set(store.collection_names())

        assert [g.generation for g in prune_old_generations(kb_of, store, retention=1).generations] == [2]
        assert prune_old_generations(kb_of, store, retention=1).generations == ()
        assert store.point_ids(g3.collection)


def test_only_retired_embedder_versions_are_pruned_from_the_cache(synced, kb_of, extra_embedders):
    refresh(synced, "docs", "hash-64@1")
    refresh(synced, "docs", "hash-256@2")
    with synced.vector_store() as store:
        prune_old_generations(kb_of, store, retention=2)  # drops g1, the only hash-256@1 generation
    # A container not synced yet: its version's vectors (e.g. from an import) are in use.
    kb_of.add_container("pending", "folder", "/srv/pending", "minilm-l6-v2@1")
    kb_of.put_embeddings("minilm-l6-v2@1", ["a" * 64, "b" * 64], np.ones((2, 384)))
    kb_of.put_embeddings("old-model@3", ["c" * 64], np.ones((1, 8)))  # nothing refers to it
    before = cache_rows(kb_of)
    assert before["hash-256@1"] > 0

    dry = prune_embedding_cache(kb_of, dry_run=True)
    assert dry.rows_deleted == before["hash-256@1"] + 1
    assert cache_rows(kb_of) == before

    report = prune_embedding_cache(kb_of)
    assert dict(zip(report.table.embedder_version, report.table.action, strict=True)) == {
        "hash-256@1": "deleted",
        "hash-256@2": "kept: in use",  # the live generation's and the container's version
        "hash-64@1": "kept: in use",  # the retired generation kept for rollback
        "minilm-l6-v2@1": "kept: in use",
        "old-model@3": "deleted",
    }
    assert report.rows_deleted == before["hash-256@1"] + 1
    kept = {v: n for v, n in before.items() if v not in ("hash-256@1", "old-model@3")}
    assert cache_rows(kb_of) == kept
    assert prune_embedding_cache(kb_of).rows_deleted == 0
