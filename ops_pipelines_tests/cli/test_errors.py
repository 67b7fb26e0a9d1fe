"""A failed job-backed command says what happened and what to do in a few lines: no stack trace,
no Dagster log noise, a non-zero exit; ``--debug`` shows the full logs and the traceback; the
run's step failure carries the same message (what the UI's run page shows)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import DagsterEventType, DagsterInstance

from ops_pipelines.cli import main

REPO = Path(__file__).resolve().parents[2]
# A failed command prints its progress lines (INFO) and then its one Error line: a handful, where
# it printed about 90 (four Dagster stack traces among them) before.
MAX_LINES = 12
NOISE = ("Traceback", "Stack Trace", "dagster._core", "STEP_FAILURE", "RUN_FAILURE", "Not executing")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """DAGSTER_HOME as ``make demo`` sets it up: the repo's dagster.yaml copied in."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in ("OPS_KB_URL", "OPS_QDRANT_URL", "OPS_QDRANT_PATH", "OPS_OBJECTS_DIR", "OPS_EMBEDDERS_FILE"):
        monkeypatch.delenv(name, raising=False)
    return home


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def ok(*args) -> str:
    code, out = run(*args)
    assert code == 0, out
    return out


@pytest.fixture
def synced(home, corpus):
    ok("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    ok("sync", "kb1")
    return corpus


def short_error(code: int, out: str) -> str:
    """The one Error line of a failed command's short output."""
    assert code == 1, out
    for noise in NOISE:
        assert noise not in out, out
    assert len(out.splitlines()) <= MAX_LINES, out
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, out
    return errors[0]


def failure_event_description(error_line: str) -> str:
    """The description of the step failure of the run the Error line names."""
    run_id = re.search(r"\(run ([0-9a-f-]{36})\)", error_line).group(1)
    (failure,) = DagsterInstance.get().all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    data = failure.dagster_event.step_failure_data
    assert data.error.message.split("\n", 1)[0].endswith(data.user_failure_data.description.split("\n", 1)[0])
    return data.user_failure_data.description


def assert_run_page_and_debug(error_line: str, args: list[str], cause: str) -> None:
    """The run's failure carries the Error line's message; --debug shows the logs and traceback."""
    message = error_line.split("): ", 1)[1]
    assert failure_event_description(error_line) == message
    code, out = run("--debug", *args)
    assert code == 1
    assert "STEP_START" in out  # Dagster's debug-level events
    assert "Stack Trace:" in out and cause in out  # the operator error's own traceback
    assert out.splitlines()[-1].startswith("Error: ")


def test_failed_sync_is_short_names_the_flag_and_debug_shows_the_traceback(synced):
    for name in ("alpha.md", "beta.md", "gamma.md"):
        (synced / name).unlink()
    code, out = run("sync", "kb1")
    line = short_error(code, out)
    assert "sync of kb1 failed" in line and "3 of 5 active documents" in line
    assert "--max-archive-fraction / max_archive_fraction" in line
    assert_run_page_and_debug(line, ["sync", "kb1"], "ops_pipelines.ingest.documents.ArchiveRefused")


def test_failed_import_is_short_and_names_the_flags(synced):
    out = ok("export", "kb1")
    key = next(line.split()[1] for line in out.splitlines() if line.lstrip().startswith("archive"))
    code, out = run("import", key)
    line = short_error(code, out)
    assert "container 'kb1' already exists" in line
    assert "--slug / slug" in line and "--force / force" in line
    assert_run_page_and_debug(line, ["import", key], "ops_pipelines.archives.importer.ImportRefused")


def test_failed_restore_is_short_and_names_the_flags(synced):
    ok("backup", "create")
    code, out = run("restore")
    line = short_error(code, out)
    assert "holds 1 container(s)" in line
    assert "--dry-run / dry_run" in line and "--force / force" in line
    assert_run_page_and_debug(line, ["restore"], "ops_pipelines.backup.restore.RestoreRefused")


def test_failed_rollback_is_short_and_says_what_to_do(synced):
    code, out = run("rollback", "kb1")
    line = short_error(code, out)
    assert "no retired generation to roll back to" in line and "--retention / retention" in line
    assert "ops-pipelines generations kb1" in line
    assert_run_page_and_debug(line, ["rollback", "kb1"], "ops_pipelines.refresh.swap.NothingToRollBack")

    code, out = run("rollback", "kb1", "--to", "7")
    line = short_error(code, out)
    assert "cannot roll back to generation 7" in line and "--to / to_generation" in line


def test_a_sync_under_a_refresh_is_named_and_the_refresh_run_again_completes(synced, extra_embedders, monkeypatch):
    """A sync re-chunks a document after the refresh embedded the chunks: the build finds a chunk
    without a vector of its version and says a sync ran, not "run the embeddings step"."""
    from ops_pipelines.defs.refresh import assets
    from ops_pipelines.ingest import chunk_documents, sync_documents
    from ops_pipelines.objects import open_object_store
    from ops_pipelines.sources import open_source

    embed, edits = assets.embed_chunks, iter(range(1, 100))

    def embed_then_a_sync_runs(kb, container, *args, **kwargs):
        report = embed(kb, container, *args, **kwargs)
        (synced / "delta.md").write_text(f"# Delta\n\nDelta now describes {next(edits)} deserts and dunes.")
        source = open_source(container.source_kind, container.source_location)
        try:
            sync_documents(kb, open_object_store(), container, source)
        finally:
            source.close()
        chunk_documents(kb, container)
        return report

    monkeypatch.setattr(assets, "embed_chunks", embed_then_a_sync_runs)
    code, out = run("refresh", "kb1", "--embedder-version", "hash-64@1")
    line = short_error(code, out)
    assert "refresh of kb1 failed" in line
    assert "a sync changed 1 chunk(s) of 'kb1' while this refresh ran" in line
    assert "ops-pipelines refresh kb1 --embedder-version hash-64@1" in line
    assert "embeddings step" not in line
    assert_run_page_and_debug(line, ["refresh", "kb1", "--embedder-version", "hash-64@1"], "MissingEmbeddings")

    monkeypatch.setattr(assets, "embed_chunks", embed)
    out = ok("refresh", "kb1", "--embedder-version", "hash-64@1")  # what the message says to do
    assert "1 computed" in out and "swap        kb_kb1 -> kb_kb1__hash-64-1__g2" in out


def test_an_unexpected_error_in_a_run_is_named_short_with_where_its_traceback_is(synced, monkeypatch):
    from ops_pipelines.defs.refresh import jobs

    def broken(*args, **kwargs):
        raise RuntimeError("the vector engine broke")

    monkeypatch.setattr(jobs, "rollback", broken)
    code, out = run("rollback", "kb1")
    assert code == 1
    for noise in NOISE:
        assert noise not in out, out
    assert len(out.splitlines()) <= MAX_LINES, out
    assert "rollback of kb1 failed (run " in out and "): RuntimeError: the vector engine broke" in out
    assert out.splitlines()[-1].startswith("(not an operator error: ops-pipelines --debug <command> prints its traceback")
    code, out = run("--debug", "rollback", "kb1")
    assert code == 1 and "Stack Trace:" in out and "in broken" in out


def test_commands_that_run_no_job_are_short_and_debug_shows_the_traceback(home):
    code, out = run("search", "ghost", "anything")
    line = short_error(code, out)
    assert "container 'ghost' does not exist" in line
    code, out = run("--debug", "search", "ghost", "anything")
    assert code == 1 and "Traceback" in out and "ContainerNotFound" in out
    assert out.splitlines()[-1] == line


def test_a_real_process_prints_only_the_error_and_debug_the_traceback(synced):
    """The installed command's real stdout and stderr, not click's test runner."""
    for name in ("alpha.md", "beta.md", "gamma.md"):
        (synced / name).unlink()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "ops_pipelines.cli"]
    done = subprocess.run([*command, "sync", "kb1"], env=env, capture_output=True, text=True, timeout=300)
    line = short_error(done.returncode, done.stdout + done.stderr)
    assert "--max-archive-fraction / max_archive_fraction" in line
    assert line in done.stderr

    done = subprocess.run([*command, "--debug", "sync", "kb1"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Stack Trace:" in done.stderr and "ArchiveRefused" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("Error: sync of kb1 failed")
