"""maintenance_job under real Dagster execution: injected orphans, an old generation, an old
archived document and expired backups are found, removed and reported as asset metadata; a second
run finds nothing to do."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from dagster import build_schedule_context
from sqlalchemy import update

from ops_pipelines.defs.maintenance.jobs import maintenance_schedule
from ops_pipelines.kb import schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.vectors import point_id


def maintain(harness):
    result = harness.job("maintenance_job").execute_in_process(instance=harness.instance)
    return {node: harness.metadata(result, node) for node in (
        "orphan_repair", "generation_retention", "embedding_cache_retention", "document_retention",
        "archive_retention", "database_maintenance",
    )}


def test_maintenance_repairs_prunes_purges_and_reports(harness, corpus, extra_embedders):
    harness.add_container("docs", corpus)
    harness.sync("docs")
    harness.refresh("docs", "hash-64@1", retention=5)
    harness.refresh("docs", "hash-256@1", retention=5)  # g1 and g2 retired, g3 live
    (corpus / "beta.md").unlink()
    harness.sync("docs")  # beta.md archived
    kb = harness.kb()
    try:
        with kb.engine.begin() as conn:
            conn.execute(update(schema.documents).where(schema.documents.c.status == "archived")
                         .values(archived_at=utcnow() - timedelta(days=40)))
        live = kb.live_generation(kb.get_container("docs").id).collection
    finally:
        kb.close()
    with harness.vector_store() as store:
        victim = sorted(store.point_ids(live))[0]
        store.delete(live, [victim])  # a chunk without its point
        stray = point_id("c", "d", 0, "h")
        store.upsert(live, [stray], np.ones((1, 256), dtype=np.float32), [{"chunk_hash": "x"}])  # a point without chunk
        store.ensure_collection("kb_docs__hash-256-1__g9__r0123abcd", 256)  # left by a killed restore
    objects = harness.resources()["objects"].open()
    for key in ("backups/20200101T010000Z_a.tar", "backups/20200101T020000Z_b.tar", "backups/notes.txt"):
        objects.put_bytes(key, b"x")

    md = maintain(harness)
    repair = md["orphan_repair"]
    assert (repair["points_deleted"], repair["points_written"], repair["collections_dropped"]) == (1, 1, 1)
    assert md["generation_retention"]["dropped"] == 1  # g1, the oldest retired
    assert md["document_retention"]["documents_purged"] == 1 and md["document_retention"]["blobs_deleted"] == 1
    assert (md["archive_retention"]["backups_deleted"], md["archive_retention"]["backups_kept"]) == (1, 2)
    assert md["database_maintenance"]["backend"] in ("sqlite", "postgresql")
    assert sorted(objects.list("backups/")) == ["backups/20200101T020000Z_b.tar", "backups/notes.txt"]
    with harness.vector_store() as store:
        assert store.point_ids(live) == set(store.point_ids(live)) and stray not in store.point_ids(live)
        assert victim in store.point_ids(live)
    assert harness.serving("docs") == live

    again = maintain(harness)
    assert (again["orphan_repair"]["points_deleted"], again["orphan_repair"]["points_written"]) == (0, 0)
    assert again["generation_retention"]["dropped"] == 0 and again["document_retention"]["documents_purged"] == 0
    assert again["archive_retention"]["backups_deleted"] == 0


def test_maintenance_schedule_is_weekly():
    assert maintenance_schedule.cron_schedule == "0 3 * * 0" and maintenance_schedule.job_name == "maintenance_job"
    assert len(maintenance_schedule.evaluate_tick(build_schedule_context()).run_requests) == 1
