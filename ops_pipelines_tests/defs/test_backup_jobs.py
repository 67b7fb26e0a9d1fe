"""backup_job, restore_job and the nightly schedule under real Dagster execution, on SQLite and
PostgreSQL, with the object store on a real S3 server for one round trip."""

from __future__ import annotations

import uuid

from dagster import build_schedule_context

from ops_pipelines.backup import list_backups
from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.defs.backup.schedules import backup_schedule
from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.resources import ObjectStoreResource
from ops_pipelines.search import search_container
from ops_pipelines_tests.conftest import step_failure_message
from ops_pipelines_tests.defs.test_sync_automation import scheduled

QUERIES = ("glaciers and ice", "apples in autumn", "rivers and the sea")


def backup(harness):
    return harness.job("backup_job").execute_in_process(instance=harness.instance)


def restore(harness, raise_on_error: bool = True, **config):
    return harness.job("restore_job").execute_in_process(
        instance=harness.instance,
        run_config={"ops": {"restore_knowledge_base": {"config": config}}},
        raise_on_error=raise_on_error,
    )


def observation(result) -> dict:
    (obs,) = [e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    return {k: v.value for k, v in obs.metadata.items()}


def serving_state(harness, slug: str) -> tuple:
    """Counts, and every hit of each query with its score (ties ordered by key: the order of equal
    scores is Qdrant's own)."""
    kb = harness.kb()
    try:
        container = kb.get_container(slug)
        counts = (kb.count_documents(container.id)["active"], kb.count_active_chunks(container.id, PARA))
        with harness.vector_store() as store:
            hits = [sorted((-round(h.score, 5), h.payload["source_key"]) for h in search_container(kb, store, slug, q, 10))
                    for q in QUERIES]
    finally:
        kb.close()
    return counts, hits


def test_backup_then_dry_run_refusal_and_forced_restore(harness, corpus):
    harness.add_container("docs", corpus)
    harness.sync("docs")
    before = serving_state(harness, "docs")

    result = backup(harness)
    md = harness.metadata(result, "kb_backup")
    objects = harness.resources()["objects"].open()
    (listed,) = list_backups(objects)
    assert md["object_key"] == listed.key and listed.run_id == result.run_id
    assert objects.size(md["object_key"]) == md["size_bytes"]
    assert (md["containers"], md["documents"], md["chunks"], md["collections"], md["points"], md["blobs"]) == (1, 5, 5, 1, 5, 5)

    dry = restore(harness, dry_run=True)
    plan = observation(dry)
    assert plan["dry_run"] is True and plan["backup"] == listed.key
    assert [r.data["action"] for r in plan["plan"].records] == ["replace"]
    assert serving_state(harness, "docs") == before and harness.serving("docs") == "kb_docs__hash-256-1__g1"

    refused = restore(harness, raise_on_error=False)
    assert not refused.success and "force" in step_failure_message(refused)
    assert harness.serving("docs") == "kb_docs__hash-256-1__g1"

    done = restore(harness, force=True, backup=result.run_id[:8])
    assert observation(done)["dry_run"] is False
    (mat,) = done.asset_materializations_for_node("restore_knowledge_base")
    assert (mat.partition, mat.metadata["checks_passed"].value) == ("docs", 6)
    assert harness.serving("docs").startswith("kb_docs__hash-256-1__g1__r")
    assert serving_state(harness, "docs") == before


def test_restore_of_a_missing_backup_fails_with_what_to_do(sqlite_harness):
    result = restore(sqlite_harness, raise_on_error=False)
    assert not result.success
    assert "no backup at all under backups/" in step_failure_message(result)


def test_backup_and_restore_through_s3(sqlite_harness, corpus, s3_server):
    harness = sqlite_harness
    harness.objects = ObjectStoreResource(
        s3_endpoint=s3_server.endpoint, s3_bucket=f"test-{uuid.uuid4().hex[:12]}",
        s3_access_key=s3_server.access_key, s3_secret_key=s3_server.secret_key, s3_secure=False,
    )
    harness.add_container("docs", corpus)
    harness.sync("docs")
    before = serving_state(harness, "docs")
    result = backup(harness)
    assert s3_server.secret_key not in repr(result.all_events)
    kb = harness.kb()
    try:  # the knowledge base is lost: metadata, collections and blobs
        container = kb.get_container("docs")
        with harness.vector_store() as store:
            store.drop_collection("kb_docs__hash-256-1__g1")
        kb.delete_container(container.id)
    finally:
        kb.close()
    objects = harness.objects.open()
    for key in list(objects.list("blobs/")):
        objects.delete(key)
    restore(harness)  # an empty knowledge base needs no force
    assert serving_state(harness, "docs") == before
    assert len(list(objects.list("blobs/"))) == 5


def test_nightly_schedule_runs_backup_job():
    assert backup_schedule.cron_schedule == "0 2 * * *"
    assert backup_schedule.job_name == "backup_job"
    requests = backup_schedule.evaluate_tick(build_schedule_context()).run_requests
    assert len(requests) == 1


def test_a_restore_removes_the_partitions_of_the_containers_it_removed(sqlite_harness, corpus):
    """Containers the backup does not have are gone after the restore, and so are their
    partitions: sync_schedule requests only containers that exist."""
    harness = sqlite_harness
    harness.add_container("docs", corpus)
    harness.sync("docs")
    backup(harness)
    harness.add_container("wiki", corpus)  # added after the backup
    harness.sync("wiki")

    restore(harness, force=True)
    assert harness.instance.get_dynamic_partitions(containers_partitions.name) == ["docs"]
    assert [r.partition_key for r in scheduled(harness)] == ["docs"]
