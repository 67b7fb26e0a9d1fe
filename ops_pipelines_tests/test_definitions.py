"""The code location loads, every asset says who owns it and where it lives, materializations say what
is live, and jobs reject bad config before a run starts."""

from __future__ import annotations

import importlib

import pytest
from dagster import AssetKey, DagsterInvalidConfigError, DefaultScheduleStatus, validate_run_config

from ops_pipelines.defs.lineage import OBJECTS


@pytest.fixture
def defs(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("OPS_KB_URL", "postgresql+psycopg2://ops:s3cret-password@db/kb")
    monkeypatch.delenv("OPS_QDRANT_URL", raising=False)
    monkeypatch.setenv("OPS_S3_ENDPOINT", "minio:9000")
    monkeypatch.setenv("OPS_S3_SECRET_KEY", "s3cret-key")
    import ops_pipelines.definitions as module

    return importlib.reload(module).defs()


def test_definitions_load_with_the_sync_capability(defs):
    job = defs.resolve_job_def("sync_job")
    assert {n.name for n in job.nodes} == {"source_documents", "chunks", "embeddings", "live_collection"}
    assert defs.resolve_sensor_def("source_change_sensor")
    assert defs.resolve_schedule_def("sync_schedule")


def test_secret_urls_are_env_vars_not_values(defs):
    assert "s3cret-password" not in repr(defs.resources["kb"])
    objects = defs.resources["objects"]
    assert objects.s3_endpoint == "minio:9000" and "s3cret-key" not in repr(objects)


@pytest.mark.parametrize(
    "bad",
    [
        {"source_documents": {"config": {"max_archive_fraction": "lots"}}},
        {"source_documents": {"config": {"no_such_option": True}}},
        {"embeddings": {"config": {"batch_size": "many"}}},
    ],
)
def test_sync_job_config_is_typed(defs, bad):
    job = defs.resolve_job_def("sync_job")
    validate_run_config(job, {"ops": {"source_documents": {"config": {"max_archive_fraction": 0.2}}}})
    with pytest.raises(DagsterInvalidConfigError):
        validate_run_config(job, {"ops": bad})


def test_refresh_job_gates_the_swap_with_blocking_checks(defs):
    job = defs.resolve_job_def("refresh_job")
    assert {"version_embeddings", "shadow_collection", "live_alias"} <= {n.name for n in job.nodes}
    graph = defs.resolve_asset_graph()
    specs = {
        key.name: graph.get_check_spec(key) for key in graph.asset_check_keys if key.asset_key.path == ["shadow_collection"]
    }
    assert set(specs) == {
        "point_count", "point_ids", "vector_dimension", "vector_values", "payload_hashes", "self_retrieval",
        "retrieval_quality",
    }
    assert all(spec.blocking and spec.description for spec in specs.values())
    assert defs.resolve_job_def("rollback_job")


@pytest.mark.parametrize(
    "bad",
    [
        {"shadow_collection": {"config": {"mode": "sideways"}}},
        {"live_alias": {"config": {"retention": "two"}}},
        {"version_embeddings": {"config": {"recompute": "yes"}}},
    ],
)
def test_refresh_job_config_is_typed(defs, bad):
    job = defs.resolve_job_def("refresh_job")
    validate_run_config(job, {"ops": {"shadow_collection": {"config": {"mode": "in_place"}}}})
    with pytest.raises(DagsterInvalidConfigError):
        validate_run_config(job, {"ops": bad})


def test_backup_restore_and_health_are_in_the_code_location(defs):
    assert {"backup_job", "restore_job", "health_job"} <= {j.name for j in defs.jobs}
    assert {s.name for s in defs.schedules} >= {"backup_schedule", "health_schedule", "sync_schedule"}
    # the probes only read: they run from the start, as the docs say; the schedules that write wait to be turned on
    running = {s.name for s in defs.schedules if s.default_status == DefaultScheduleStatus.RUNNING}
    assert running == {"health_schedule"}
    graph = defs.resolve_asset_graph()
    health = {key.name for key in graph.asset_check_keys if key.asset_key.path == ["knowledge_base"]}
    assert health == {"metadata_db", "qdrant", "serving", "object_store", "embedders", "dagster_instance", "sync_freshness"}
    with pytest.raises(DagsterInvalidConfigError):
        validate_run_config(
            defs.resolve_job_def("restore_job"), {"ops": {"restore_knowledge_base": {"config": {"force": "yes"}}}}
        )


def test_every_asset_and_check_is_described_owned_and_kinded(defs):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description, f"{name} has no description"
        assert node.owners == ["team:kb-ops"], f"{name} has no owner"
        assert node.kinds, f"{name} has no kind"
        assert node.tags.get("ops/capability") == node.group_name, f"{name}: capability tag differs from its group"
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).description, f"check {key.name} has no description"
    kinds = {key.to_user_string(): graph.get(key).kinds for key in graph.get_all_asset_keys()}
    assert {"qdrant"} <= kinds["live_collection"] and {"qdrant"} <= kinds["live_alias"]
    assert {OBJECTS} <= kinds["container_export"] and {OBJECTS} <= kinds["kb_backup"]
    # OPS_KB_URL of the code location names PostgreSQL; without it, the embedded SQLite file.
    assert kinds["chunks"] & {"postgres", "sqlite"}


def _descriptions(defs):
    """Every description the UI renders as markdown: assets, checks, jobs, their ops and config
    fields, schedules and sensors."""
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        yield f"asset {key.to_user_string()}", graph.get(key).description
    for key in graph.asset_check_keys:
        yield f"check {key.name}", graph.get_check_spec(key).description
    repository = defs.get_repository_def()
    for job in repository.get_all_jobs():
        yield f"job {job.name}", job.description
        for node in job.all_node_defs:
            yield f"op {node.name}", node.description
            config = getattr(node, "config_schema", None)
            fields = getattr(getattr(config, "config_type", None), "fields", None) or {}
            for name, field in fields.items():
                yield f"config {node.name}.{name}", field.description
    for schedule in repository.schedule_defs:
        yield f"schedule {schedule.name}", schedule.description
    for sensor in repository.sensor_defs:
        yield f"sensor {sensor.name}", sensor.description


def test_no_description_has_a_placeholder_the_markdown_renderer_eats(defs):
    """``kb_<slug>`` in a description renders as ``kb_``: placeholders go in backticks."""
    import re

    bare = []
    for where, text in _descriptions(defs):
        outside_code = re.sub(r"`[^`]*`", "", text or "")
        bare += [f"{where}: {tag}" for tag in re.findall(r"<[^<>\s][^<>]*>", outside_code)]
    assert bare == []


def test_the_run_failure_sensor_and_its_asset_are_in_the_code_location(defs):
    sensor = defs.resolve_sensor_def("run_failure_alert_sensor")
    assert sensor.default_status.value == "RUNNING"
    node = defs.resolve_asset_graph().get(AssetKey("run_failures"))
    assert node.group_name == "alerts" and node.is_external


def test_sync_and_refresh_materializations_say_what_is_live(sqlite_harness, corpus):
    sqlite_harness.add_container("docs", corpus)
    result = sqlite_harness.sync("docs")
    live = sqlite_harness.metadata(result, "live_collection")
    assert {"collection", "alias", "generation", "embedder_version", "synced_at", "points"} <= set(live)
    assert live["alias"] == "kb_docs" and live["generation"] == 1 and live["embedder_version"] == "hash-256@1"
    assert live["points"] == sqlite_harness.metadata(result, "chunks")["active_chunks"]
    assert {"inserted", "updated", "skipped", "archived", "active_documents"} <= set(
        sqlite_harness.metadata(result, "source_documents")
    )
    assert sqlite_harness.metadata(result, "chunks")["chunker"] == "para-800@1"
    assert {"embedder_version", "dimension", "computed", "cached"} <= set(sqlite_harness.metadata(result, "embeddings"))

    refreshed = sqlite_harness.refresh("docs", "hash-256@1")
    md = sqlite_harness.metadata(refreshed, "live_alias")
    assert md["alias"] == "kb_docs" and md["generation"] == 2 and md["embedder_version"] == "hash-256@1"
    assert md["previous_collection"] == live["collection"]


def test_model_and_qdrant_writing_steps_are_in_their_pools(defs):
    graph = defs.resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.materializable_asset_keys}
    assert {name for name, p in pools.items() if p == {"embedder"}} == {"embeddings", "version_embeddings"}
    assert {name for name, p in pools.items() if p == {"qdrant_writes"}} == {
        "live_collection", "shadow_collection", "live_alias", "orphan_repair", "generation_retention",
    }
    for job, op in (("rollback_job", "rollback_alias"), ("restore_job", "restore_knowledge_base"),
                    ("import_job", "import_container")):
        assert defs.resolve_job_def(job).graph.node_named(op).definition.pool == "qdrant_writes"
