"""The production configuration files (docker-compose.yml, Dockerfile, Makefile, deploy/) stay
consistent with the code. No Docker engine runs here: `make up` is run against a stand-in
`docker` command that records what it is asked to do."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, materialize

from ops_pipelines.alerts import secret_name
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
        assert type(instance.run_coordinator).__name__ == "ContainerRunCoordinator"  # a QueuedRunCoordinator
        concurrency = instance.get_concurrency_config()
        per_container = {"applyLimitPerUniqueValue": True}
        assert concurrency.run_queue_config.tag_concurrency_limits == [
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


SERVICES = {"postgres", "qdrant", "minio", "user-code", "webserver", "webserver-readonly", "proxy", "daemon",
            "metrics", "prometheus"}
DAGSTER_SERVICES = ("user-code", "webserver", "webserver-readonly", "daemon")
# Read by the code but meaningless in the containers (the embedded, single-machine layout).
EMBEDDED_ONLY = {"OPS_QDRANT_PATH", "OPS_OBJECTS_DIR"}


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_runs_every_service_with_a_healthcheck():
    compose = _compose()
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name} is not restarted"
    images = {compose["services"][name]["image"] for name in DAGSTER_SERVICES}
    assert len(images) == 1, "the Dagster services run one image"
    assert all(compose["services"][name]["build"] == "." for name in DAGSTER_SERVICES)
    for name in ("webserver", "daemon"):  # they start once the code server answers
        assert compose["services"][name]["depends_on"]["user-code"]["condition"] == "service_healthy"
    # The webserver and daemon find the code server where it listens, under the location's name.
    (grpc,) = yaml.safe_load((REPO / "deploy" / "workspace.grpc.yaml").read_text())["load_from"]
    command = shlex.split(compose["services"]["user-code"]["command"])
    assert grpc["grpc_server"]["host"] == "user-code"
    assert str(grpc["grpc_server"]["port"]) == command[command.index("-p") + 1]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    assert grpc["grpc_server"]["location_name"] == project["code_location_name"]
    assert command[command.index("--location-name") + 1] == project["code_location_name"]
    # dg's code location module: <root_module>.definitions
    assert command[command.index("-m") + 1] == f"{project['root_module']}.definitions"


def test_compose_passes_every_variable_the_code_reads_and_no_secret_in_clear():
    env = _compose()["x-ops-env"]
    code = "".join(p.read_text() for p in (REPO / "ops_pipelines").rglob("*.py"))
    read_by_code = set(re.findall(r"\b(OPS_[A-Z0-9_]+)\b", code))
    missing = read_by_code - EMBEDDED_ONLY - set(env)
    assert not missing, f"docker-compose.yml does not pass {sorted(missing)} to the containers"
    assert {"OPS_ALERT_WEBHOOK_URL", "OPS_SYNC_MAX_AGE_HOURS", "OPS_DAGSTER_UI_URL"} <= set(env)
    for name, value in env.items():
        if secret_name(name) or "@" in str(value):
            assert "${" in str(value), f"{name} holds a literal secret: take it from .env"
    example = (REPO / ".env.example").read_text()
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "QDRANT_API_KEY", "OPS_ALERT_WEBHOOK_URL"):
        assert f"{name}=" in example
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_the_image_provides_every_command_the_services_run():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"pip install -c constraints.txt \.$", dockerfile, re.MULTILINE), "the image installs the project"
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), f"the Dockerfile copies {path}, which does not exist"
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    commands = {shlex.split(s["command"])[0] for s in _compose()["services"].values() if "build" in s}
    commands |= {s["healthcheck"]["test"][1] for s in _compose()["services"].values() if "build" in s}
    (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    commands.add(yaml.safe_load(cmd)[0])
    commands.discard("python")
    assert commands == {"dagster", "dagster-webserver", "dagster-daemon", "ops-pipelines"}
    assert commands <= scripts, f"not installed as console scripts: {commands - scripts}"
    assert "ops-pipelines" in scripts
    assert re.search(r"^USER (?!root)\S+$", dockerfile, re.MULTILINE), "the image runs as root"


def _make(target: str, path: Path, **env) -> subprocess.CompletedProcess:
    """``make <target>`` in the repository with PATH limited to ``path``."""
    make = shutil.which("make")
    assert make, "make is not installed"
    return subprocess.run(
        [make, "--no-print-directory", "-C", str(REPO), target],
        env={"PATH": str(path), "HOME": os.environ.get("HOME", "/tmp"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _fake_docker(folder: Path, compose: bool = True) -> Path:
    """A ``docker`` that records its arguments; with ``compose=False`` the plugin is missing."""
    folder.mkdir()
    log = folder / "calls.log"
    script = folder / "docker"
    missing = 'if [ "$1" = compose ]; then echo "unknown command: compose" >&2; exit 1; fi\n' if not compose else ""
    script.write_text(f'#!/bin/sh\n{missing}echo "$@" >> {log}\n')
    script.chmod(0o755)
    return log


def test_make_up_without_docker_says_what_to_install(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = _make("up", empty)
    assert result.returncode != 0
    assert "make up: no 'docker' command: install Docker Engine with the compose plugin" in result.stderr

    _fake_docker(tmp_path / "no-compose", compose=False)
    result = _make("up", tmp_path / "no-compose")
    assert result.returncode != 0 and "'docker compose' is missing" in result.stderr


def test_make_up_and_down_drive_docker_compose(tmp_path):
    log = _fake_docker(tmp_path / "bin")
    result = _make("up", tmp_path / "bin", POSTGRES_PASSWORD="from-the-shell")
    assert result.returncode == 0, result.stderr
    assert "Dagster UI: http://localhost:3000" in result.stdout
    assert log.read_text().splitlines() == ["compose version", "info", "compose up -d --build"]
    result = _make("down", tmp_path / "bin")
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines()[-1] == "compose down"


@pytest.mark.skipif((REPO / ".env").exists(), reason="this checkout has a .env")
def test_make_up_without_secrets_says_how_to_set_them(tmp_path):
    _fake_docker(tmp_path / "bin")
    result = _make("up", tmp_path / "bin")
    assert result.returncode != 0
    assert "cp .env.example .env and set POSTGRES_PASSWORD and MINIO_ROOT_PASSWORD" in result.stderr


def test_the_writable_webserver_is_reached_only_through_the_authenticating_proxy(tmp_path):
    from ops_pipelines_tests.conftest import _free_ports
    from ops_pipelines_tests.nginx import TEMPLATE, TEMPLATE_VARIABLE, check_config, prepare

    compose = _compose()
    webserver, viewer, proxy = (compose["services"][name] for name in ("webserver", "webserver-readonly", "proxy"))
    assert "ports" not in webserver, "the writable webserver is published: only the proxy may be"
    # The viewers' webserver: the same one, read-only, published on loopback unless VIEWER_BIND says otherwise.
    command = shlex.split(webserver["command"])
    assert shlex.split(viewer["command"]) == [command[0], "--read-only", *command[1:]]
    assert (viewer["environment"], viewer["volumes"]) == (webserver["environment"], webserver["volumes"])
    assert viewer["ports"] == ["${VIEWER_BIND:-127.0.0.1}:${VIEWER_PORT:-3001}:" + command[command.index("-p") + 1]]
    # The proxy: nginx, publishing its port, passing to the webserver where it listens.
    assert proxy["image"].startswith("nginx:") and proxy["ports"], proxy
    env = proxy["environment"]
    (published,) = proxy["ports"]
    assert published.rsplit(":", 1)[1] == env["PROXY_PORT"]
    assert env["DAGSTER_WEBSERVER"] == f"webserver:{command[command.index('-p') + 1]}"
    assert proxy["depends_on"]["webserver"]["condition"] == "service_healthy"
    assert proxy["healthcheck"]["test"][-1] == f"http://127.0.0.1:{env['PROXY_PORT']}/healthz"
    # The config mounted is deploy/nginx's, as the image's template (envsubst of the service's
    # environment at start): the variables it takes are the ones the service sets, and every
    # other $name in it is one of nginx's own (lowercase), which envsubst leaves alone.
    mounts = [volume.split(":") for volume in proxy["volumes"]]
    assert [(source, target) for source, target, *_ in mounts] == [
        ("./deploy/nginx/dagster.conf.template", "/etc/nginx/templates/default.conf.template")
    ]
    assert REPO / mounts[0][0] == TEMPLATE
    text = TEMPLATE.read_text()
    assert set(TEMPLATE_VARIABLE.findall(text)) == set(env)
    assert all(name.islower() for name in re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text)), "an nginx $variable envsubst would replace"
    for directive in ("auth_basic_user_file ${PROXY_HTPASSWD};", "proxy_set_header Upgrade $http_upgrade;",
                      "proxy_set_header Connection $connection_upgrade;"):
        assert directive in text
    # Its users: a compose secret read from a file outside the repository, named in .env.
    (secret,) = proxy["secrets"]
    assert env["PROXY_HTPASSWD"] == f"/run/secrets/{secret}"
    assert compose["secrets"][secret]["file"].startswith("${UI_HTPASSWD_FILE:?")
    assert "UI_HTPASSWD_FILE=" in (REPO / ".env.example").read_text()
    assert not list((REPO / "deploy").rglob("*htpasswd*")), "no user file in the repository"
    # nginx -t of the template rendered as the image renders it (the service name `webserver` does
    # not resolve here, and nginx resolves proxy_pass hosts at start: 127.0.0.1 instead).
    webserver_port, proxy_port = _free_ports(2)
    conf = prepare(tmp_path / "nginx", f"127.0.0.1:{webserver_port}", proxy_port, {"ops": "a-password"})
    checked = check_config(conf)
    assert checked.returncode == 0, checked.stderr


def test_the_metrics_service_reads_what_the_dagster_services_do_and_prometheus_scrapes_it():
    compose = _compose()
    metrics, prometheus = compose["services"]["metrics"], compose["services"]["prometheus"]
    assert metrics["build"] == "." and metrics["image"] == compose["services"]["user-code"]["image"]
    assert metrics["environment"] == compose["services"]["user-code"]["environment"]  # the same KB, Qdrant, instance
    command = shlex.split(metrics["command"])
    assert command[:3] == ["ops-pipelines", "metrics", "serve"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert port in metrics["healthcheck"]["test"][-1]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"metrics:{port}"]
    assert config["global"]["scrape_interval"] == "15s"
    assert (REPO / "deploy" / "prometheus" / config["rule_files"][0]).is_file()
    assert prometheus["depends_on"]["metrics"]["condition"] == "service_healthy"
