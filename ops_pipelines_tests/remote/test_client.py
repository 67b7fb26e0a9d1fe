"""The webserver is missing or is not a Dagster webserver: the error says where and what to do."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest
from click.testing import CliRunner

from ops_pipelines.cli import main
from ops_pipelines.remote import DagsterRemote, RemoteError
from ops_pipelines_tests.conftest import _free_ports


def test_nothing_listening_names_the_url_and_how_to_start_one():
    (port,) = _free_ports(1)
    with pytest.raises(RemoteError) as caught:
        DagsterRemote(f"http://127.0.0.1:{port}").repositories()
    message = str(caught.value)
    assert f"no Dagster webserver answers at http://127.0.0.1:{port}" in message
    assert "make ui" in message and "DAGSTER_URL" in message


@pytest.fixture
def plain_web_server(tmp_path):
    """A real web server that is not Dagster's (python's file server: POST is not supported)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_web_server_that_is_not_dagster_is_told_apart(plain_web_server):
    with pytest.raises(RemoteError, match="without JSON: is DAGSTER_URL the address of a Dagster webserver"):
        DagsterRemote(plain_web_server).repositories()


def test_a_url_that_is_not_http_is_refused():
    with pytest.raises(RemoteError, match="DAGSTER_URL must look like http://host:port"):
        DagsterRemote("127.0.0.1:3000")


def test_a_url_with_credentials_is_refused_without_repeating_them():
    with pytest.raises(RemoteError, match="must not carry credentials") as caught:
        DagsterRemote("https://ops:s3cret-token@dagster.example.org")
    assert "s3cret-token" not in str(caught.value)


def test_cli_refuses_bad_run_config_before_calling_anyone(monkeypatch):
    (port,) = _free_ports(1)
    monkeypatch.setenv("DAGSTER_URL", f"http://127.0.0.1:{port}")  # nothing there: never reached
    for args in (["trigger", "sync_job", "--container", "a"], ["backfill", "sync_job", "--all-containers"]):
        result = CliRunner().invoke(main, [*args, "--config-json", "{not json"])
        assert result.exit_code == 2 and "not JSON" in result.output
        result = CliRunner().invoke(main, [*args, "--config-json", "[1, 2]"])
        assert result.exit_code == 2 and "must be a JSON object" in result.output


def test_cli_reports_an_unreachable_webserver_as_an_error(monkeypatch):
    (port,) = _free_ports(1)
    monkeypatch.setenv("DAGSTER_URL", f"http://127.0.0.1:{port}")
    result = CliRunner().invoke(main, ["trigger", "sync_job", "--container", "a", "--wait"])
    assert result.exit_code == 1
    assert f"Error: no Dagster webserver answers at http://127.0.0.1:{port}" in result.output
