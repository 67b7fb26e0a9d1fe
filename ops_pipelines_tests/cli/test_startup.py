"""Commands start light: each runs for real in a fresh interpreter against a small synced knowledge
base, and the modules it imported are read back from that interpreter's ``sys.modules``.

A command that runs no job must not import Dagster, torch or sentence-transformers (the hashing
embedder needs neither), pandas or qdrant-client; a job-backed command loads only the Dagster
layer of its own capability. None imports minio or bs4 for the embedded default. A heavy
top-level import added anywhere on a command's path fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops_pipelines.cli import main

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("dagster", "torch", "sentence_transformers", "pandas", "qdrant_client")
# Half a second between them, and the embedded default (a folder object store, a corpus of
# Markdown files) needs neither: minio is imported for an S3 store, bs4 for an HTML document.
NOT_NEEDED_HERE = {"minio", "bs4"}

# Runs the command given as arguments, then prints what it printed and every top-level module
# and ops_pipelines module it imported, as one JSON line on the real stdout.
PROBE = """
import json, sys
from click.testing import CliRunner
from ops_pipelines.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
modules = sorted(m for m in sys.modules if "." not in m or m.startswith("ops_pipelines."))
print(json.dumps({"code": result.exit_code, "output": result.output, "modules": modules}))
"""


def imported(env: dict[str, str], *args: str) -> tuple[str, set[str]]:
    """The output of ``ops-pipelines ARGS`` in a fresh interpreter, and the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["code"] == 0, report["output"]
    return report["output"], set(report["modules"])


@pytest.fixture(scope="module")
def kb_home(tmp_path_factory, small_corpus):
    """A DAGSTER_HOME with container kb1 synced (hashing embedder), a backup and an export."""
    home = tmp_path_factory.mktemp("dagster_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        for name in ("OPS_KB_URL", "OPS_QDRANT_URL", "OPS_QDRANT_PATH", "OPS_OBJECTS_DIR", "OPS_EMBEDDERS_FILE"):
            mp.delenv(name, raising=False)
        for args in (
            ["container", "add", "--slug", "kb1", "--source", f"folder:{small_corpus}", "--embedder", "hash-256@1"],
            ["sync", "kb1"],
            ["backup", "create"],
            ["export", "kb1"],
        ):
            result = CliRunner().invoke(main, args, catch_exceptions=False)
            assert result.exit_code == 0, result.output
    archive = next(line.split()[1] for line in result.output.splitlines() if line.lstrip().startswith("archive"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}
    # The worktree's code first, whatever an editable install points at.
    env |= {"DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return env, archive


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "gamma.md").write_text("# Gamma\n\nGamma covers glaciers, ice and mountain valleys.")
    (root / "delta.md").write_text("# Delta\n\nDelta describes rivers meeting the sea in a delta.")
    return root


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], "Day-2 operations"),
        (["search", "kb1", "glaciers and mountain valleys", "--limit", "1"], "[gamma.md]"),
        (["container", "list"], "active=2"),
        (["generations", "kb1"], "<- kb_kb1"),
        (["source", "status"], "breaker=closed"),
        (["source", "reset", "kb1"], "circuit breaker closed"),
        (["archive", "verify", "{archive}"], "OK tar archive"),
        (["backup", "list"], "backups/"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_commands_that_run_no_job_import_nothing_heavy(kb_home, args, expected):
    env, archive = kb_home
    output, modules = imported(env, *[a.format(archive=archive) for a in args])
    assert expected in output
    assert not set(HEAVY) & modules
    assert not NOT_NEEDED_HERE & modules
    assert not {m for m in modules if m.startswith("ops_pipelines.defs")}


def test_sync_loads_only_the_sync_capability(kb_home):
    env, _ = kb_home
    output, modules = imported(env, "sync", "kb1")
    assert "inserted 0, updated 0, skipped 2" in output
    assert "ops_pipelines.defs.sync" in modules
    capabilities = {"sync", "refresh", "export", "backup", "health", "maintenance", "alerts"}
    loaded = {m.split(".")[2] for m in modules if m.startswith("ops_pipelines.defs.")}
    assert loaded & capabilities == {"sync"}
    assert "ops_pipelines.definitions" not in modules
    assert not ({"torch", "sentence_transformers"} | NOT_NEEDED_HERE) & modules
