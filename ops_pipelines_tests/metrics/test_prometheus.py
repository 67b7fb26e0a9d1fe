"""A real Prometheus scraping a real ``ops-pipelines metrics serve`` (both subprocesses on free
loopback ports) and evaluating deploy/prometheus/alerts.yml: the values of a synced container, of
an open breaker and of a failed run, read back through Prometheus's HTTP API; and the endpoint
shows neither the knowledge base's password nor anything of the documents."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from dagster import DagsterInstance

from ops_pipelines.cli import main
from ops_pipelines.kb.clock import utcnow
from ops_pipelines_tests.conftest import SyncHarness, _free_ports, system_program, throwaway_database
from ops_pipelines_tests.deployment import BIN, REPO, running, wait_for

PASSWORD = "pr0m-kb-pa55word"  # PostgreSQL here trusts 127.0.0.1: the password is carried, never checked
ASSET_JOB = "__ephemeral_asset_job__"


def prometheus_binary() -> str:
    return system_program("prometheus", "prometheus")


@pytest.fixture
def synced_home(tmp_path, corpus, monkeypatch):
    """A Dagster home (SQLite instance) and a PostgreSQL knowledge base whose URL has a password:
    container docs synced, flaky synced then its breaker opened, gone failing (unmounted)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with throwaway_database("ops_metrics") as url:
        kb_url = url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
        assert PASSWORD in kb_url
        instance = DagsterInstance.from_config(str(home))
        try:
            harness = SyncHarness(kb_url=kb_url, home=home, instance=instance)
            harness.add_container("docs", corpus)
            assert harness.sync("docs").success
            harness.add_container("flaky", corpus)
            assert harness.sync("flaky").success
            harness.open_breaker("flaky", "503 from the source", utcnow() + timedelta(hours=1))
            harness.add_container("gone", tmp_path / "unmounted")
            assert not harness.sync("gone", raise_on_error=False).success
            yield harness
        finally:
            instance.dispose()


def query(url: str, promql: str) -> dict[tuple, float]:
    """{sorted label items without __name__: value} of an instant query."""
    response = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
        for r in body["data"]["result"]
    }


def one(url: str, promql: str) -> float:
    (value,) = query(url, promql).values()
    return value


def test_prometheus_scrapes_the_endpoint_and_evaluates_the_alerts(synced_home, tmp_path, corpus):
    harness = synced_home
    prometheus = prometheus_binary()
    metrics_port, prometheus_port = _free_ports(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}
    env |= {
        "DAGSTER_HOME": str(harness.home),
        "OPS_KB_URL": harness.kb_url,
        "OPS_QDRANT_PATH": harness.qdrant_path,
        "OPS_OBJECTS_DIR": str(harness.home / "objects"),
        "HF_HUB_OFFLINE": "1",
    }
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {REPO / 'deploy' / 'prometheus' / 'alerts.yml'}\n"
        "scrape_configs:\n  - job_name: ops-pipelines\n    scrape_timeout: 1s\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    logs = {"metrics": tmp_path / "metrics.log", "prometheus": tmp_path / "prometheus.log"}

    def diagnostics() -> str:
        return "".join(f"\n--- {name} ---\n{path.read_text(errors='replace')[-3000:]}" for name, path in logs.items()
                       if path.exists())

    url = f"http://127.0.0.1:{prometheus_port}"
    with running([str(BIN / "ops-pipelines"), "metrics", "serve", "--port", str(metrics_port)], logs["metrics"],
                 env, tmp_path), \
         running([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{prometheus_port}"], logs["prometheus"], env, tmp_path):

        def scraped() -> bool:
            try:
                return bool(query(url, 'ops_container_points{container="docs"}')) and bool(
                    query(url, "ops_health_up"))
            except requests.RequestException:  # not listening yet
                return False

        wait_for(scraped, "Prometheus holding a scrape of the metrics endpoint", 90, diagnostics)
        assert one(url, 'up{job="ops-pipelines"}') == 1

        kb = harness.kb()
        try:
            docs = kb.get_container("docs")
            live = kb.live_generation(docs.id)
            from ops_pipelines.embedders import get_version

            chunks = kb.count_active_chunks(docs.id, get_version(live.embedder_version).chunker)
        finally:
            kb.close()
        # the synced container
        assert one(url, 'ops_container_documents{container="docs",status="active"}') == 5
        assert one(url, 'ops_container_active_chunks{container="docs"}') == chunks
        assert one(url, 'ops_container_points{container="docs"}') == chunks
        assert one(url, 'ops_container_serving_ok{container="docs"}') == 1
        assert one(url, f'ops_container_live_info{{container="docs",collection="{live.collection}"}}') == 1
        assert one(url, 'ops_container_last_sync_timestamp_seconds{container="docs"}') == pytest.approx(
            docs.last_synced_at.timestamp(), abs=0.01)
        # the open breaker
        assert one(url, 'ops_container_breaker_state{container="flaky"}') == 1
        assert one(url, 'ops_container_source_failures{container="flaky"}') == 3
        assert one(url, 'ops_container_breaker_state{container="docs"}') == 0
        # the failed run
        assert one(url, f'ops_dagster_runs_recent{{dagster_job="{ASSET_JOB}",status="FAILURE"}}') == 1
        assert one(url, f'ops_dagster_step_failures{{dagster_job="{ASSET_JOB}",step="source_documents"}}') == 1
        assert one(url, 'ops_container_last_sync_timestamp_seconds{container="gone"}') == 0
        assert query(url, "ops_metrics_source_up == 0") == {}
        # The rules are loaded and evaluated on these values: the breaker's alert is pending (for: 1m),
        # the never-synced container's too (for: 15m).
        rules = requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"OpsSourceBreakerOpen", "OpsPointsNotEqualChunks"}

        def pending() -> dict:
            return query(url, 'ALERTS{alertstate="pending"}')

        wait_for(lambda: any(("alertname", "OpsSourceBreakerOpen") in k for k in pending()),
                 "OpsSourceBreakerOpen pending", 30, diagnostics)
        alerts = pending()
        assert any(("alertname", "OpsContainerSyncStale") in k and ("container", "gone") in k for k in alerts)
        assert not any(("container", "docs") in k for k in alerts), alerts

        # What the endpoint serves holds no secret and nothing of the documents.
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        for leak in (PASSWORD, "Alpha", "apples", "glaciers", "503 from the source", str(corpus), "127.0.0.1:5432"):
            assert leak not in text, leak
    assert PASSWORD not in logs["metrics"].read_text()


def test_serve_says_once_why_it_cannot_listen(tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("OPS_KB_URL", f"sqlite:///{tmp_path / 'kb.sqlite'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["metrics", "serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.output
    assert "Traceback" not in result.output

    monkeypatch.setenv("OPS_METRICS_STUCK_RUN_AFTER_S", "soon")
    result = CliRunner().invoke(main, ["metrics", "serve", "--port", "0"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "Error: OPS_METRICS_STUCK_RUN_AFTER_S='soon' is not a positive number"


def test_the_compose_prometheus_scrapes_the_metrics_service():
    import yaml

    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["metrics:9464"]
    assert Path(REPO / "deploy" / "prometheus" / "alerts.yml").is_file()
