"""The production configuration files stay consistent with the code."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml
from dagster import DagsterInstance, materialize

from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.sync.assets import sync_assets
from ops_pipelines.kb import KnowledgeBase

REPO = Path(__file__).resolve().parent.parent


def test_sync_runs_on_the_postgres_dagster_instance(postgres_url, tmp_path, monkeypatch, corpus):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url)  # Dagster's storage and the KB share the DB here
    instance = DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        per_container = {"applyLimitPerUniqueValue": True}
        assert concurrency.run_queue_config.tag_concurrency_limits == [
            {"key": "dagster/partition/container", "value": per_container, "limit": 1},
            {"key": "ops/container", "value": per_container, "limit": 1},
            {"key": "ops/operation", "value": "restore", "limit": 1},
        ]
        assert concurrency.pool_config.default_pool_limit == 1
        kb = KnowledgeBase(postgres_url)
        kb.add_container("kb1", "folder", str(corpus), "hash-256@1")
        kb.close()
        instance.add_dynamic_partitions(containers_partitions.name, ["kb1"])
        from ops_pipelines_tests.conftest import SyncHarness

        harness = SyncHarness(kb_url=postgres_url, home=tmp_path, instance=instance)
        result = materialize(sync_assets, partition_key="kb1", instance=instance, resources=harness.resources())
        assert result.success
        assert harness.metadata(result, "source_documents")["inserted"] == 5
        assert len(instance.get_runs()) == 1
    finally:
        instance.dispose()


def test_compose_uses_the_variables_the_code_reads():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    code = "".join(p.read_text() for p in (REPO / "ops_pipelines").rglob("*.py"))
    read_by_code = set(re.findall(r"\b(OPS_[A-Z0-9_]+)\b", code))
    for service in ("user-code", "webserver", "daemon"):
        env = compose["services"][service]["environment"]
        ops_vars = {k for k in env if k.startswith("OPS_")}
        assert ops_vars <= read_by_code, f"{service} sets variables the code never reads: {ops_vars - read_by_code}"
        assert {"OPS_KB_URL", "OPS_QDRANT_URL", "OPS_S3_ENDPOINT", "OPS_S3_SECRET_KEY", "DAGSTER_PG_URL", "DAGSTER_HOME"} <= set(env)
    dagster_yaml = (REPO / "deploy" / "dagster.postgres.yaml").read_text()
    assert "DAGSTER_PG_URL" in dagster_yaml
    assert all("postgresql+psycopg2://" in env for env in (compose["x-ops-env"]["DAGSTER_PG_URL"], compose["x-ops-env"]["OPS_KB_URL"]))
