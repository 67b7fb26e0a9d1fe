"""The production path, end to end: dagster-webserver and dagster-daemon run as real processes on
the production instance configuration (deploy/dagster.postgres.yaml: PostgreSQL storage, the run
queue's tag limits, the pools), the knowledge base on PostgreSQL too, and everything is driven the
way operators and other services do it: `ops-pipelines trigger` / `backfill` over GraphQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from ops_pipelines.cli import main
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.remote import DagsterRemote, RemoteError
from ops_pipelines.vectors import open_vector_store
from ops_pipelines_tests.conftest import _free_ports, serving_of, throwaway_database

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NEW = "hash-256@2"  # the embedder version the backfill rotates to, registered by this test


@dataclass
class Deployment:
    url: str
    home: Path
    kb_url: str
    qdrant_path: str
    logs: dict[str, Path]

    @property
    def remote(self) -> DagsterRemote:
        return DagsterRemote(self.url)

    def cli(self, *args: str) -> tuple[int, str]:
        """Exit code and output; after an exception the command did not handle, its traceback too
        (CliRunner catches it, so an assertion on the output would show nothing)."""
        result = CliRunner().invoke(main, list(args))
        output = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            output += "".join(traceback.format_exception(*result.exc_info))
        return result.exit_code, output

    def diagnostics(self) -> str:
        return "".join(
            f"\n--- end of {name} log ({path}) ---\n{path.read_text(errors='replace')[-4000:]}"
            for name, path in self.logs.items()
            if path.exists()
        )

    def serving(self, slug: str) -> str | None:
        kb = KnowledgeBase(self.kb_url)
        try:
            with open_vector_store(path=self.qdrant_path) as store:
                return serving_of(kb, store, slug)
        finally:
            kb.close()

    def runs(self, run_ids: list[str]) -> dict[str, dict]:
        found = self.remote.query(
            "query($ids: [String]) { runsOrError(filter: {runIds: $ids}) {"
            " ... on Runs { results { runId status startTime endTime runConfigYaml } } } }",
            {"ids": run_ids},
        )
        return {r["runId"]: r for r in found["runsOrError"]["results"]}


def failure_observation(d: Deployment, run_id: str) -> dict[str, str] | None:
    """The metadata of the run_failures observation recorded for ``run_id``, if there is one yet."""
    found = d.remote.query(
        'query { assetOrError(assetKey: {path: ["run_failures"]}) { ... on Asset { assetObservations(limit: 50) {'
        " metadataEntries { label ... on TextMetadataEntry { text } ... on PipelineRunMetadataEntry { runId } } } } } }"
    )
    for observation in (found["assetOrError"] or {}).get("assetObservations") or []:
        entries = {e["label"]: e.get("text", e.get("runId")) for e in observation["metadataEntries"]}
        if entries.get("run_id") == run_id:
            return entries
    return None


@contextmanager
def running(args: list[str], log: Path, env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen]:
    """A process in its own process group (with the code servers and run workers it starts),
    stopped with all of them at the end: SIGTERM, then SIGKILL if it lingers."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    try:
        yield process
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        except ProcessLookupError:
            pass
        try:  # what the group started and left behind (a run worker mid-step)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(condition: Callable[[], object], what: str, deadline: float, diagnostics: Callable[[], str]):
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline:.0f} s{diagnostics()}")
        time.sleep(0.2)


def corpus(root: Path, documents: int) -> Path:
    """Markdown documents of several paragraphs each about distinct words, so every chunk differs."""
    root.mkdir(parents=True)
    for d in range(documents):
        paragraphs = [
            " ".join(f"word{d}x{p}x{w} topic{(d * 7 + p * 3 + w) % 97}" for w in range(40)) for p in range(8)
        ]
        (root / f"doc{d:03}.md").write_text(f"# Document {d}\n\n" + "\n\n".join(paragraphs))
    return root


@pytest.fixture
def deployment(tmp_path, monkeypatch) -> Iterator[Deployment]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")  # as production has it
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: ops_pipelines.definitions\n"
        "      location_name: ops_pipelines\n"
    )
    embedders = tmp_path / "embedders.toml"
    embedders.write_text(f'[versions."{NEW}"]\nprovider = "hashing"\ndimension = 256\n')
    (port,) = _free_ports(1)
    url = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        dagster_db = stack.enter_context(throwaway_database("ops_e2e_dagster"))
        kb_db = stack.enter_context(throwaway_database("ops_e2e_kb"))
        env = {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": dagster_db,
            "DAGSTER_URL": url,
            "OPS_KB_URL": kb_db,
            "OPS_QDRANT_PATH": str(tmp_path / "qdrant"),
            "OPS_OBJECTS_DIR": str(tmp_path / "objects"),
            "OPS_EMBEDDERS_FILE": str(embedders),
            "HF_HUB_OFFLINE": "1",
            # health_schedule starts running: its runs would land among the ones this test counts
            "OPS_HEALTH_CRON": "0 0 1 1 *",
        }
        for name in ("OPS_QDRANT_URL", "OPS_QDRANT_API_KEY", "OPS_S3_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():  # the CLI in this process reads the same settings
            monkeypatch.setenv(name, value)
        process_env = dict(os.environ)
        deployment = Deployment(
            url, home, kb_db, env["OPS_QDRANT_PATH"], {"webserver": tmp_path / "webserver.log", "daemon": tmp_path / "daemon.log"}
        )
        try:
            webserver = stack.enter_context(
                running(
                    [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)],
                    deployment.logs["webserver"], process_env, tmp_path,
                )
            )
            daemon = stack.enter_context(
                running(
                    [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], deployment.logs["daemon"], process_env,
                    tmp_path,
                )
            )

            def ready() -> bool:
                for process in (webserver, daemon):
                    assert process.poll() is None, f"{process.args[0]} exited{deployment.diagnostics()}"
                try:
                    return requests.get(f"{url}/server_info", timeout=2).ok and bool(deployment.remote.repositories())
                except (requests.RequestException, RemoteError):  # not listening yet, or still loading
                    return False

            wait_for(ready, "the webserver serving the code location", 180, deployment.diagnostics)
            yield deployment
        finally:
            # Shown by pytest when the test failed (captured output of the teardown).
            print(deployment.diagnostics())


def stop_sensor(remote: DagsterRemote, name: str) -> None:
    (repository,) = remote.repositories()
    selector = {**repository.selector, "sensorName": name}
    sensor = remote.query(
        "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {"
        " ... on Sensor { sensorState { id selectorId } } } }",
        {"s": selector},
    )["sensorOrError"]["sensorState"]
    stopped = remote.query(
        "mutation($origin: String, $selector: String) { stopSensor(jobOriginId: $origin, jobSelectorId: $selector) {"
        " __typename ... on StopSensorMutationResult { instigationState { status } } } }",
        {"origin": sensor["id"], "selector": sensor["selectorId"]},
    )["stopSensor"]
    assert stopped["instigationState"]["status"] == "STOPPED", stopped


def run_id_of(output: str) -> str:
    first = output.splitlines()[0]
    assert first.startswith("run "), output
    return first.split()[1]


def test_operator_path_over_graphql(deployment: Deployment, tmp_path):
    d = deployment
    # This test launches every sync itself; the sensor would request the same syncs on its own.
    stop_sensor(d.remote, "source_change_sensor")
    code, out = d.cli("embedders", "sync")
    assert code == 0, out
    for slug in ("alpha", "beta"):
        code, out = d.cli("container", "add", "--slug", slug, "--source", f"folder:{corpus(tmp_path / slug, 60)}",
                          "--embedder", "hash-256@1")
        assert code == 0, out

    # Bad input: refused with a clear error before anything is launched.
    code, out = d.cli("trigger", "sync_job", "--container", "gamma")
    assert code == 1 and "container 'gamma' is not a partition of sync_job (known: alpha, beta)" in out, out
    code, out = d.cli("trigger", "resync_job", "--container", "alpha")
    assert code == 1 and "unknown job 'resync_job'" in out and "sync_job" in out, out
    code, out = d.cli("trigger", "refresh_job", "--container", "alpha")
    assert code == 1 and "pass --embedder-version" in out, out
    code, out = d.cli("backfill", "refresh_job", "--all-containers", "--embedder-version", "e5@1")
    assert code == 1 and "embedder version 'e5@1' is not a partition of refresh_job" in out, out
    assert d.remote.query("{ runsOrError { ... on Runs { count } } }")["runsOrError"]["count"] == 0

    # 1. sync_job for each container, launched over GraphQL and followed to the end.
    for slug in ("alpha", "beta"):
        code, out = d.cli("trigger", "sync_job", "--container", slug, "--wait", "--timeout", "300")
        assert code == 0, out + d.diagnostics()
        assert "QUEUED" in out and out.rstrip().endswith("SUCCESS"), out
        assert d.serving(slug) == f"kb_{slug}__hash-256-1__g1"

    # 2. Model rotation: a backfill of the new embedder version over every container.
    code, out = d.cli(
        "backfill", "refresh_job", "--all-containers", "--embedder-version", NEW, "--wait", "--timeout", "600"
    )
    assert code == 0, out + d.diagnostics()
    assert f"2 partitions: alpha|{NEW}, beta|{NEW}" in out and "backfill COMPLETED_SUCCESS" in out, out
    assert out.count("  SUCCESS") == 2, out
    for slug in ("alpha", "beta"):
        assert d.serving(slug) == f"kb_{slug}__hash-256-2__g2"
    kb = KnowledgeBase(d.kb_url)
    try:
        assert {c.slug: c.embedder_version for c in kb.list_containers()} == {"alpha": NEW, "beta": NEW}
    finally:
        kb.close()
    # The model and Qdrant-writing steps took their slots in the instance's pools (default limit 1).
    pools = d.remote.query("{ instance { concurrencyLimits { concurrencyKey slotCount } } }")["instance"]
    assert {p["concurrencyKey"]: p["slotCount"] for p in pools["concurrencyLimits"]} == {
        "embedder": 1, "qdrant_writes": 1,
    }

    # 3. Two refreshes of one container: the run queue holds the second until the first is done.
    recompute = json.dumps({"ops": {"version_embeddings": {"config": {"recompute": True}}}})
    retention = json.dumps({"ops": {"live_alias": {"config": {"retention": 3}}}})
    code, out = d.cli("trigger", "refresh_job", "--container", "alpha", "--embedder-version", "hash-256@1",
                      "--config-json", recompute, "--config-json", retention)
    assert code == 0, out
    first = run_id_of(out)
    code, out = d.cli("trigger", "refresh_job", "--container", "alpha", "--embedder-version", NEW)
    assert code == 0, out
    second = run_id_of(out)
    seen: list[tuple[str, str]] = []

    def both_done() -> bool:
        runs = d.runs([first, second])
        seen.append((runs[first]["status"], runs[second]["status"]))
        return all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs.values())

    wait_for(both_done, "both refreshes of alpha ending", 600, d.diagnostics)
    assert ("STARTED", "QUEUED") in seen, seen
    in_progress = {"STARTING", "STARTED"}
    assert not [s for s in seen if s[0] in in_progress and s[1] in in_progress], seen
    runs = d.runs([first, second])
    assert [runs[first]["status"], runs[second]["status"]] == ["SUCCESS", "SUCCESS"], runs
    assert runs[second]["startTime"] >= runs[first]["endTime"]
    assert "recompute: true" in runs[first]["runConfigYaml"] and "retention: 3" in runs[first]["runConfigYaml"]
    assert d.serving("alpha") == "kb_alpha__hash-256-2__g4"  # g3 from the first, then g4 from the second

    # 4. A failing run: the CLI exits non-zero naming the failed step and its error.
    gone = corpus(tmp_path / "gone", 2)
    code, out = d.cli("container", "add", "--slug", "gone", "--source", f"folder:{gone}", "--embedder", "hash-256@1")
    assert code == 0, out
    shutil.rmtree(gone)  # the share is unmounted
    code, out = d.cli("trigger", "sync_job", "--container", "gone", "--wait", "--timeout", "300")
    assert code == 1, out
    failed = run_id_of(out)
    assert f"run {failed} of sync_job ended FAILURE" in out, out
    assert "step source_documents: folder source" in out and "does not exist (unmounted or moved?)" in out, out
    # ... and run_failure_alert_sensor, run by the daemon, records it on the run_failures asset.
    alert = wait_for(lambda: failure_observation(d, failed), "the failure alert of the failed run", 180, d.diagnostics)
    assert (alert["container"], alert["job"], alert["step"]) == ("gone", "sync_job", "source_documents"), alert
    assert "does not exist (unmounted or moved?)" in alert["error"], alert

    # 5. A backfill where one partition fails: the others still swap; the failure is reported.
    code, out = d.cli(
        "backfill", "refresh_job", "--partitions", "beta|hash-256@1,gone|hash-256@1", "--wait", "--timeout", "600"
    )
    assert code == 1, out + d.diagnostics()
    assert "ended COMPLETED_FAILED" in out and "(gone|hash-256@1) FAILURE" in out, out
    assert "step version_embeddings: container 'gone' has no active chunks" in out, out
    assert d.serving("beta") == "kb_beta__hash-256-1__g3"
    assert d.serving("gone") is None

    # 6. --wait gives up after --timeout, says where to follow the run, and leaves it running.
    code, out = d.cli("trigger", "sync_job", "--container", "alpha", "--wait", "--timeout", "0")
    late = run_id_of(out)
    assert code == 1 and re.search(rf"run {late} is still [A-Z]+ after 0 s; follow it at {d.url}/runs/{late}", out), out
    assert d.runs([late])[late]["status"] != "CANCELED"
