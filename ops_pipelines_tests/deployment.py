"""A production-shaped deployment for the tests that drive Dagster from outside: dagster-webserver
and dagster-daemon as real processes on the production instance configuration
(deploy/dagster.postgres.yaml: PostgreSQL storage, the run queue's tag limits, the pools), the
knowledge base on PostgreSQL too, embedded Qdrant and the folder object store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from click.testing import CliRunner

from ops_pipelines.cli import main
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.remote import DagsterRemote, RemoteError
from ops_pipelines.vectors import open_vector_store
from ops_pipelines_tests.conftest import _free_ports, serving_of, throwaway_database

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKSPACE = (
    "load_from:\n  - python_module:\n      module_name: ops_pipelines.definitions\n"
    "      location_name: ops_pipelines\n"
)


@dataclass
class Deployment:
    url: str
    home: Path
    kb_url: str
    qdrant_path: str
    logs: dict[str, Path]
    root: Path | None = None
    workspace: Path | None = None
    env: dict[str, str] | None = None  # the processes' environment

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

    @contextmanager
    def webserver(self, name: str, *args: str) -> Iterator[str]:
        """One more dagster-webserver (with ``args``, e.g. ``--read-only``) on the same instance and
        workspace, as production runs a second one for viewers; its URL once it serves the code
        location. Stopped on exit."""
        (port,) = _free_ports(1)
        url = f"http://127.0.0.1:{port}"
        self.logs[name] = self.root / f"{name}.log"
        command = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(self.workspace), *args]
        with running(command, self.logs[name], self.env, self.root) as process:
            def ready() -> bool:
                assert process.poll() is None, f"{name} exited{self.diagnostics()}"
                try:
                    return requests.get(f"{url}/server_info", timeout=2).ok and bool(DagsterRemote(url).repositories())
                except (requests.RequestException, RemoteError):
                    return False

            wait_for(ready, f"{name} serving the code location", 180, self.diagnostics)
            yield url

    def runs(self, run_ids: list[str]) -> dict[str, dict]:
        found = self.remote.query(
            "query($ids: [String]) { runsOrError(filter: {runIds: $ids}) {"
            " ... on Runs { results { runId status startTime endTime runConfigYaml } } } }",
            {"ids": run_ids},
        )
        return {r["runId"]: r for r in found["runsOrError"]["results"]}


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


@contextmanager
def deployment_running(
    root: Path, monkeypatch, embedders_toml: str = "", webserver_args: Sequence[str] = ()
) -> Iterator[Deployment]:
    """A webserver (with ``webserver_args``) and a daemon serving the code location from throwaway
    PostgreSQL databases, everything under ``root``; this process's environment (the CLI's
    settings) set to the same, through ``monkeypatch``. Stopped, with the runs they started, on exit."""
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")  # as production has it
    workspace = root / "workspace.yaml"
    workspace.write_text(WORKSPACE)
    embedders = root / "embedders.toml"
    embedders.write_text(embedders_toml)
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
            "OPS_QDRANT_PATH": str(root / "qdrant"),
            "OPS_OBJECTS_DIR": str(root / "objects"),
            "OPS_EMBEDDERS_FILE": str(embedders),
            "HF_HUB_OFFLINE": "1",
            # health_schedule starts running: its runs would land among the ones the tests count
            "OPS_HEALTH_CRON": "0 0 1 1 *",
        }
        for name in ("OPS_QDRANT_URL", "OPS_QDRANT_API_KEY", "OPS_S3_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():  # the CLI in this process reads the same settings
            monkeypatch.setenv(name, value)
        process_env = dict(os.environ)
        deployment = Deployment(
            url, home, kb_db, env["OPS_QDRANT_PATH"], {"webserver": root / "webserver.log", "daemon": root / "daemon.log"},
            root=root, workspace=workspace, env=process_env,
        )
        try:
            webserver = stack.enter_context(
                running(
                    [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace),
                     *webserver_args],
                    deployment.logs["webserver"], process_env, root,
                )
            )
            daemon = stack.enter_context(
                running([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], deployment.logs["daemon"], process_env, root)
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
