"""Access to a production deployment, for real: the writable webserver behind the nginx proxy of
deploy/nginx (HTTP basic auth), the CLI through it with the credentials of its environment, and a
read-only webserver (`dagster-webserver --read-only`) for viewers on the same instance."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
import requests

from ops_pipelines_tests.conftest import _free_ports
from ops_pipelines_tests.deployment import Deployment, deployment_running
from ops_pipelines_tests.e2e.test_operator_path import corpus, run_id_of, stop_sensor
from ops_pipelines_tests.nginx import nginx_binary, proxy_running

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(900)]

USER, PASSWORD = "operator", "pw-Zq7!never-printed"
LAUNCH = (
    "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename"
    " ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }"
)
ASSET_NODES = "{ assetNodes { assetKey { path } } }"


@pytest.fixture
def deployment(tmp_path, monkeypatch) -> Iterator[Deployment]:
    nginx_binary()  # before minutes of starting Dagster: skipped (or failed under CI) at once
    with deployment_running(tmp_path, monkeypatch) as running_deployment:
        yield running_deployment


def launch_params(d: Deployment, slug: str) -> dict:
    (repository,) = d.remote.repositories()
    return {
        "selector": {**repository.selector, "pipelineName": "sync_job"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": slug}]},
    }


def websocket_handshake(url: str, authorization: str | None) -> str:
    """The status line nginx answers a websocket upgrade of /graphql with (the UI's subscriptions)."""
    parts = urlsplit(url)
    key = base64.b64encode(b"ops-pipelines-ws").decode()  # 16 bytes, as RFC 6455 asks
    lines = [
        "GET /graphql HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket", "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: graphql-ws",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.makefile("rb").readline().decode().strip()


def test_the_writable_webserver_only_behind_the_proxy_and_a_read_only_one_for_viewers(
    deployment: Deployment, tmp_path, monkeypatch
):
    d = deployment
    stop_sensor(d.remote, "source_change_sensor")  # this test launches the one sync itself
    code, out = d.cli("container", "add", "--slug", "alpha", "--source", f"folder:{corpus(tmp_path / 'alpha', 3)}",
                      "--embedder", "hash-256@1")
    assert code == 0, out
    params = launch_params(d, "alpha")
    (port,) = _free_ports(1)
    with proxy_running(tmp_path / "nginx", urlsplit(d.url).netloc, port, {USER: PASSWORD}) as proxy:
        # Without credentials (or with wrong ones) the proxy refuses everything: UI and GraphQL.
        for auth in (None, (USER, "wrong"), ("nobody", PASSWORD)):
            assert requests.get(f"{proxy}/", auth=auth, timeout=30).status_code == 401
            refused = requests.post(
                f"{proxy}/graphql", json={"query": LAUNCH, "variables": {"p": params}}, auth=auth, timeout=30
            )
            assert refused.status_code == 401, refused.text
        assert requests.get(f"{proxy}/", auth=(USER, PASSWORD), timeout=30).ok  # the UI
        # The UI's subscriptions: the websocket upgrade goes through to the webserver.
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        assert websocket_handshake(proxy, None).startswith("HTTP/1.1 401")
        assert websocket_handshake(proxy, f"Basic {token}").startswith("HTTP/1.1 101"), "no websocket upgrade"
        assert d.remote.query("{ runsOrError { ... on Runs { count } } }")["runsOrError"]["count"] == 0

        # The CLI through the proxy, with the credentials of its environment.
        monkeypatch.setenv("DAGSTER_URL", proxy)
        for name in ("DAGSTER_URL_USER", "DAGSTER_URL_PASSWORD", "DAGSTER_URL_TOKEN", "DAGSTER_URL_HEADERS"):
            monkeypatch.delenv(name, raising=False)
        code, out = d.cli("trigger", "sync_job", "--container", "alpha")
        assert code == 1, out
        assert out.strip() == (
            f"Error: the webserver at {proxy} refused a request without credentials (HTTP 401): set "
            "DAGSTER_URL_USER and DAGSTER_URL_PASSWORD to a user of its proxy (or DAGSTER_URL_TOKEN / "
            "DAGSTER_URL_HEADERS for an SSO proxy), see docs/deployment.md#access"
        ), out
        monkeypatch.setenv("DAGSTER_URL_USER", USER)
        monkeypatch.setenv("DAGSTER_URL_PASSWORD", "not-the-password")
        code, out = d.cli("trigger", "sync_job", "--container", "alpha")
        assert code == 1 and len(out.strip().splitlines()) == 1, out
        assert f"the webserver at {proxy} refused the credentials of user '{USER}'" in out, out
        assert "not-the-password" not in out and "Traceback" not in out, out

        monkeypatch.setenv("DAGSTER_URL_PASSWORD", PASSWORD)
        code, out = d.cli("trigger", "sync_job", "--container", "alpha", "--wait", "--timeout", "300")
        assert code == 0, out + d.diagnostics()
        synced = run_id_of(out)
        assert out.rstrip().endswith("SUCCESS") and f"{proxy}/runs/{synced}" in out, out
        assert PASSWORD not in out
        assert d.serving("alpha") == "kb_alpha__hash-256-1__g1"

        # Credentials in DAGSTER_URL itself work too, and are never shown.
        monkeypatch.delenv("DAGSTER_URL_USER")
        monkeypatch.delenv("DAGSTER_URL_PASSWORD")
        with_credentials = proxy.replace("http://", f"http://{USER}:{quote(PASSWORD, safe='')}@")
        monkeypatch.setenv("DAGSTER_URL", with_credentials)
        code, out = d.cli("backfill", "sync_job", "--partitions", "alpha", "--wait", "--timeout", "300")
        assert code == 0, out + d.diagnostics()
        assert f"  {proxy}/runs/b/" in out and "backfill COMPLETED_SUCCESS" in out, out
        assert PASSWORD not in out and quote(PASSWORD, safe="") not in out and f"{USER}:" not in out

        # The proxy's log names the user of each request, never the password.
        assert f" {USER} " in (tmp_path / "nginx" / "access.log").read_text()
        assert PASSWORD not in (tmp_path / "nginx" / "access.log").read_text()

    # A read-only webserver on the same instance: the asset graph and the runs, but no launch.
    with d.webserver("webserver-readonly", "--read-only") as viewer:
        nodes = requests.post(f"{viewer}/graphql", json={"query": ASSET_NODES}, timeout=60).json()["data"]["assetNodes"]
        assets = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"source_documents", "chunks", "embeddings", "live_collection"} <= assets, assets
        runs = requests.post(
            f"{viewer}/graphql",
            json={"query": "query($ids: [String]) { runsOrError(filter: {runIds: $ids}) { ... on Runs { results { status } } } }",
                  "variables": {"ids": [synced]}},
            timeout=60,
        ).json()["data"]["runsOrError"]["results"]
        assert runs == [{"status": "SUCCESS"}]  # the sync launched through the proxy
        refused = requests.post(
            f"{viewer}/graphql", json={"query": LAUNCH, "variables": {"p": params}}, timeout=60
        ).json()["data"]["launchRun"]
        assert refused["__typename"] == "UnauthorizedError", refused
        # The CLI pointed at it by mistake says so.
        monkeypatch.setenv("DAGSTER_URL", viewer)
        code, out = d.cli("trigger", "sync_job", "--container", "alpha")
        assert code == 1 and len(out.strip().splitlines()) == 1, out
        assert f"the webserver at {viewer} does not allow it" in out and "is it the read-only one?" in out, out
