"""The webserver is missing or is not a Dagster webserver: the error says where and what to do."""

from __future__ import annotations

import base64
import functools
import http.server
import threading

import pytest
from click.testing import CliRunner

from ops_pipelines.cli import main
from ops_pipelines.remote import DagsterRemote, JobRef, RemoteError, Repository
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


class _Guarded(http.server.BaseHTTPRequestHandler):
    """An authenticating proxy's answer to everything: 401 (nginx's HTML page), after recording the
    request's headers."""

    seen: list[dict[str, str]] = []

    def _refuse(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append(dict(self.headers))
        body = b"<html><head><title>401 Authorization Required</title></head></html>"
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="Dagster"')
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args):
        pass


@pytest.fixture
def guarded_server():
    _Guarded.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Guarded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Guarded.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


JOB = JobRef("sync_job", Repository("ops_pipelines", "__repository__", ("sync_job",), ()))
CREDENTIAL_VARIABLES = ("DAGSTER_URL_USER", "DAGSTER_URL_PASSWORD", "DAGSTER_URL_TOKEN", "DAGSTER_URL_HEADERS")


@pytest.fixture
def no_credentials(monkeypatch):
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_credentials_in_the_url_are_used_and_never_shown(guarded_server):
    url, seen = guarded_server
    remote = DagsterRemote(url.replace("http://", "http://ops:s3cret%2Ftoken@") + "/")
    assert remote.url == url and remote.run_url("r1") == f"{url}/runs/r1"
    for call in (remote.repositories, lambda: remote.launch(JOB, {}, {})):  # a plain POST, and dagster-graphql's client
        with pytest.raises(RemoteError) as caught:
            call()
        assert str(caught.value).startswith(f"the webserver at {url} refused the credentials of user 'ops'")
        assert "s3cret" not in str(caught.value)
    expected = "Basic " + base64.b64encode(b"ops:s3cret/token").decode()
    assert [h["Authorization"] for h in seen] == [expected, expected]


def test_a_url_that_is_not_http_never_repeats_its_credentials():
    with pytest.raises(RemoteError, match="must look like http://host:port") as caught:
        DagsterRemote("ops:s3cret-token@dagster.example.org")
    assert "s3cret-token" not in str(caught.value)


def test_the_environment_s_credentials_go_with_every_request(guarded_server, no_credentials):
    url, seen = guarded_server
    no_credentials.setenv("DAGSTER_URL", url)
    no_credentials.setenv("DAGSTER_URL_USER", "ops")
    no_credentials.setenv("DAGSTER_URL_PASSWORD", "pa:ss-wörd")
    no_credentials.setenv("DAGSTER_URL_HEADERS", '{"CF-Access-Client-Id": "id-1", "CF-Access-Client-Secret": "sec-2"}')
    remote = DagsterRemote.from_environment()
    for call in (remote.repositories, lambda: remote.launch(JOB, {}, {})):
        with pytest.raises(RemoteError, match="refused the credentials of user 'ops'"):
            call()
    basic = "Basic " + base64.b64encode("ops:pa:ss-wörd".encode()).decode()
    assert [(h["Authorization"], h["CF-Access-Client-Id"], h["CF-Access-Client-Secret"]) for h in seen] == [
        (basic, "id-1", "sec-2")
    ] * 2

    seen.clear()
    no_credentials.delenv("DAGSTER_URL_USER")
    no_credentials.delenv("DAGSTER_URL_PASSWORD")
    no_credentials.setenv("DAGSTER_URL_TOKEN", "eyJ.oidc.token")
    remote = DagsterRemote.from_environment()
    for call in (remote.repositories, lambda: remote.launch(JOB, {}, {})):
        with pytest.raises(RemoteError, match="refused the credentials of DAGSTER_URL_TOKEN / DAGSTER_URL_HEADERS") as caught:
            call()
        assert "eyJ" not in str(caught.value) and "sec-2" not in str(caught.value)
    assert [h["Authorization"] for h in seen] == ["Bearer eyJ.oidc.token"] * 2


def test_cli_says_which_variables_to_set_when_the_proxy_asks_for_credentials(guarded_server, no_credentials):
    url, _ = guarded_server
    no_credentials.setenv("DAGSTER_URL", url)
    for args in (["trigger", "sync_job", "--container", "a"], ["backfill", "sync_job", "--all-containers"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and result.output == (
            f"Error: the webserver at {url} refused a request without credentials (HTTP 401): set DAGSTER_URL_USER "
            "and DAGSTER_URL_PASSWORD to a user of its proxy (or DAGSTER_URL_TOKEN / DAGSTER_URL_HEADERS for an SSO "
            "proxy), see docs/deployment.md#access\n"
        ), result.output


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"DAGSTER_URL_USER": "ops"}, "DAGSTER_URL_USER is set but DAGSTER_URL_PASSWORD is not: set both, or neither"),
        ({"DAGSTER_URL_PASSWORD": "s3cret"}, "DAGSTER_URL_PASSWORD is set but DAGSTER_URL_USER is not"),
        ({"DAGSTER_URL_HEADERS": '{"X-Key": s3cret}'}, "DAGSTER_URL_HEADERS is not a JSON object of header names to strings"),
        ({"DAGSTER_URL_HEADERS": '{"X-Key": "s3cret\\r\\nX-Other: 1"}'}, "a value with line breaks or edge spaces: 'X-Key'"),
        ({"DAGSTER_URL_TOKEN": "s3cret", "DAGSTER_URL_USER": "ops", "DAGSTER_URL_PASSWORD": "pw"}, "set one of them"),
    ],
)
def test_malformed_credential_variables_are_named_without_their_values(no_credentials, variables, message):
    for name, value in variables.items():
        no_credentials.setenv(name, value)
    result = CliRunner().invoke(main, ["trigger", "sync_job", "--container", "a"])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output


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
