"""``ops-pipelines vectors migrate`` on the vector folder the code before Qdrant Edge left."""

from __future__ import annotations

import shutil

from ops_pipelines_tests.cli.test_commands import run
from ops_pipelines_tests.test_legacy_fixtures import LEGACY


def test_an_old_folder_is_refused_by_name_then_migrated_then_searched(tmp_path, monkeypatch):
    shutil.copytree(LEGACY / "qdrant", tmp_path / "qdrant")
    shutil.copy(LEGACY / "kb.sqlite", tmp_path / "kb.sqlite")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPS_KB_URL", f"sqlite:///{tmp_path / 'kb.sqlite'}")
    monkeypatch.setenv("OPS_QDRANT_PATH", str(tmp_path / "qdrant"))

    code, out = run("search", "legacy", "glaciers and ice")
    assert code == 1 and "Traceback" not in out
    assert out.startswith("Error: ") and "ops-pipelines vectors migrate" in out

    code, out = run("vectors", "migrate")
    assert code == 0, out
    assert "kb_legacy__hash-256-1__g2" in out and "4 points" in out
    assert "alias kb_legacy: kb_legacy__hash-256-1__g2 (agrees)" in out
    assert "--remove-old" in out and (tmp_path / "qdrant" / "meta.json").exists()

    code, out = run("search", "legacy", "glaciers and ice")
    assert code == 0 and out.splitlines()[0].endswith("[gamma.md]")

    code, out = run("vectors", "migrate")
    assert code == 1 and "nothing to migrate" in out  # already migrated: the marker says so
    code, out = run("vectors", "migrate", "--remove-old")
    assert code == 0 and "files (meta.json, collection/) are removed" in out
    assert not (tmp_path / "qdrant" / "meta.json").exists() and not (tmp_path / "qdrant" / "collection").exists()
    assert run("search", "legacy", "glaciers and ice")[1].splitlines()[0].endswith("[gamma.md]")
