"""Health: the CLI table and exit code, and the scheduled asset checks, against real components;
each failure is a real one (a closed port, a missing alias, a sync killed mid-upsert, a restore
that died before its alias update)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import AssetCheckSeverity, build_schedule_context
from sqlalchemy import update

from ops_pipelines.cli import main
from ops_pipelines.defs.health.jobs import health_schedule
from ops_pipelines.health import COMPONENTS
from ops_pipelines.kb import KnowledgeBase, schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines_tests.cli.conftest import home  # noqa: F401 - the fixture


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_health_command_reports_every_component(home, corpus, monkeypatch):  # noqa: F811
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    run("sync", "kb1")
    code, out = run("health")
    assert code == 0, out
    names = (*COMPONENTS, "sync_freshness")
    lines = [line for line in out.strip().splitlines() if line.split()[0] in names]  # not Dagster's warnings
    assert [line.split()[0] for line in lines] == list(names)
    assert all(line.split()[1] == "ok" for line in lines)
    assert "1 containers served" in out and "hash-256@1" in out
    assert "all 1 containers synced within 24 h" in out

    monkeypatch.setenv("OPS_S3_ENDPOINT", "127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("OPS_S3_ACCESS_KEY", "k")
    monkeypatch.setenv("OPS_S3_SECRET_KEY", "s3cr3t-value")
    code, out = run("health")
    assert code == 1
    assert "object_store      FAIL" in out and "unhealthy: object_store" in out
    assert "s3cr3t-value" not in out


def test_health_job_checks_fail_on_an_unserved_container(harness, corpus):
    harness.add_container("docs", corpus)
    harness.sync("docs")
    result = harness.job("health_job").execute_in_process(instance=harness.instance)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {*COMPONENTS, "sync_freshness"} and all(e.passed for e in evaluations.values())

    with harness.vector_store() as store:  # the live collection is gone: searches fail
        store.drop_collection(live := harness.serving("docs"))
    result = harness.job("health_job").execute_in_process(instance=harness.instance)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["serving"].passed
    assert (
        f"docs: its live collection {live} does not exist: run `ops-pipelines sync docs`"
        in evaluations["serving"].description  # what the UI shows as the result
    )
    assert all(e.passed for name, e in evaluations.items() if name != "serving")

    assert harness.sync("docs").success  # the remedy: the collection is written again from the cache
    result = harness.job("health_job").execute_in_process(instance=harness.instance)
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_health_schedule_targets_the_checks():
    assert health_schedule.job_name == "health_job" and health_schedule.cron_schedule == "*/15 * * * *"
    assert len(health_schedule.evaluate_tick(build_schedule_context()).run_requests) == 1


def test_sync_freshness_warns_about_stale_and_never_synced_containers(harness, corpus, tmp_path, monkeypatch):
    monkeypatch.delenv("OPS_SYNC_MAX_AGE_HOURS", raising=False)
    for slug in ("fresh", "old"):
        harness.add_container(slug, corpus)
        harness.sync(slug)
    harness.add_container("broken", tmp_path / "unmounted")
    failed = harness.sync("broken", raise_on_error=False)
    assert not failed.success
    kb = harness.kb()
    try:
        with kb.engine.begin() as conn:  # "old" last synced 30 hours ago
            conn.execute(
                update(schema.containers)
                .where(schema.containers.c.slug == "old")
                .values(last_synced_at=utcnow() - timedelta(hours=30))
            )
    finally:
        kb.close()

    result = harness.job("health_job").execute_in_process(instance=harness.instance)
    assert result.success  # a warning does not fail the health run
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["sync_freshness"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.description == (
        "2 of 3 containers not synced within 24 h: broken (never synced), old (30 h)"
    )
    md = {k: v.value for k, v in check.metadata.items()}
    assert md["stale"] == 2 and md["containers"] == 3 and md["max_age_hours"] == 24
    rows = {r.data["container"]: r.data for r in md["freshness"].records}
    assert rows["broken"]["status"] == "never synced"
    assert rows["broken"]["last_sync_run"] == f"FAILURE {failed.run_id}"  # why it is stale
    assert rows["old"]["status"] == "stale" and 29.9 <= rows["old"]["age_hours"] <= 30.1
    assert rows["fresh"]["status"] == "fresh" and rows["fresh"]["last_sync_run"] is None

    monkeypatch.setenv("OPS_SYNC_MAX_AGE_HOURS", "48")  # a wider window; "broken" still never synced
    result = harness.job("health_job").execute_in_process(instance=harness.instance)
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["sync_freshness"]
    assert check.description == "1 of 3 containers not synced within 48 h: broken (never synced)"


def test_health_command_warns_about_a_never_synced_container_and_exits_0(home, corpus, monkeypatch):  # noqa: F811
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    code, out = run("health")
    assert code == 0, out
    (line,) = [line for line in out.splitlines() if line.startswith("sync_freshness")]
    assert line.split()[1] == "warn" and line.endswith("1 of 1 containers not synced within 24 h: kb1 (never synced)")

    monkeypatch.setenv("OPS_SYNC_MAX_AGE_HOURS", "soon")
    code, out = run("health")
    (line,) = [line for line in out.splitlines() if line.startswith("sync_freshness")]
    assert code == 0 and line.split()[1] == "warn"
    assert line.endswith("ValueError: OPS_SYNC_MAX_AGE_HOURS='soon' is not a positive number of hours (e.g. 24 or 1.5)")


# --- serving: each alias on its live generation, holding one point per active chunk --------------


def big_corpus(root: Path, version: str = "v1", documents: int = 300, paragraphs: int = 10) -> Path:
    """``documents`` files of ``paragraphs`` paragraphs of about 600 characters: one chunk each,
    3,000 chunks by default, more than one upsert batch (2,048 points)."""
    root.mkdir(exist_ok=True)
    words = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "su", "ti") for b in ("ba", "de", "fo", "gu", "hi", "jo")]
    draw = random.Random(f"{version}-{documents}-{paragraphs}")
    for d in range(documents):
        text = "\n\n".join(
            f"{version} document {d} paragraph {p}: " + " ".join(draw.choices(words, k=100)) for p in range(paragraphs)
        )
        (root / f"doc-{d:04d}.md").write_text(text)
    return root


def killed_sync(slug: str) -> None:
    """``ops-pipelines sync SLUG`` in a process of its own, killed (SIGKILL) after its first upsert."""
    process = subprocess.run(
        [sys.executable, "-m", "ops_pipelines_tests.killed_sync", slug, "1"], capture_output=True, text=True, timeout=600
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    assert f"killed after upserting into kb_{slug}__hash-256-1__g1" in process.stdout


def line_of(out: str, component: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith(component)]
    return line


def test_health_fails_after_a_first_sync_killed_mid_upsert_until_it_is_synced(home, tmp_path):  # noqa: F811
    corpus = big_corpus(tmp_path / "big")
    run("container", "add", "--slug", "docs", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    killed_sync("docs")

    code, out = run("health")
    assert code == 1 and "unhealthy: serving" in out, out
    line = line_of(out, "serving")
    assert line.split()[1] == "FAIL"
    assert "docs: kb_docs__hash-256-1__g1 holds 2048 points for 3000 active chunks" in line
    assert "run `ops-pipelines sync docs`" in line
    assert "stopped while writing it" in line  # the killed run left its lease

    code, out = run("sync", "docs")
    assert code == 0, out
    code, out = run("health")
    assert code == 0, out
    assert line_of(out, "serving").split()[1] == "ok" and "1 containers served" in out


def test_health_fails_after_an_incremental_sync_killed_mid_upsert_until_it_is_synced(home, tmp_path):  # noqa: F811
    corpus = big_corpus(tmp_path / "big")
    run("container", "add", "--slug", "docs", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    assert run("sync", "docs")[0] == 0
    assert run("health")[0] == 0
    big_corpus(corpus, version="v2")  # every document changed: 3,000 new chunks replace 3,000 old ones
    killed_sync("docs")

    code, out = run("health")
    assert code == 1, out
    # the old points are not deleted yet, 2,048 of the new ones are written
    assert "docs: kb_docs__hash-256-1__g1 holds 5048 points for 3000 active chunks" in line_of(out, "serving")

    assert run("sync", "docs")[0] == 0
    code, out = run("health")
    assert code == 0, out


def test_a_restore_killed_before_its_alias_moves_fails_health_until_repaired(sqlite_url, tmp_path, corpus, monkeypatch):
    """On a Qdrant server, a restore that dies between its DB commit and its alias update leaves
    every alias on a collection of the replaced knowledge base: health names each container and
    what to run; a sync of one moves its alias, maintenance's alias repair moves them all."""
    from ops_pipelines.backup import restore as restore_module
    from ops_pipelines.backup import restore_backup, verify_backup, write_backup
    from ops_pipelines.ingest import sync_collection
    from ops_pipelines.maintenance import drop_orphan_collections, repair_aliases
    from ops_pipelines.objects import FolderObjectStore
    from ops_pipelines.serving_report import serving_report
    from ops_pipelines_tests.backup.test_backup import _sync
    from ops_pipelines_tests.conftest import backend_store

    kb, objects = KnowledgeBase(sqlite_url), FolderObjectStore(tmp_path / "objects")
    with closing(kb), backend_store("server", tmp_path / "qdrant") as store:
        _sync(kb, objects, store, "docs", corpus)
        _sync(kb, objects, store, "wiki", corpus)
        assert serving_report(kb, store).problems == []
        write_backup(kb, store, objects, tmp_path / "kb.tar", run_id="r1")

        def killed(*args):
            raise KeyboardInterrupt("killed before the aliases moved")

        monkeypatch.setattr(restore_module, "publish_all", killed)
        verified = verify_backup(tmp_path / "kb.tar", tmp_path / "members", objects)
        with pytest.raises(KeyboardInterrupt):
            restore_backup(kb, store, objects, verified, force=True)
        restored = {c.slug: kb.live_generation(c.id).collection for c in kb.list_containers()}
        assert all("__r" in name for name in restored.values())  # the DB names the restored collections

        report = serving_report(kb, store)
        assert sorted(p.container for p in report.problems) == ["docs", "wiki"]
        message = report.describe()
        assert (
            f"docs: alias kb_docs serves kb_docs__hash-256-1__g1, but the live generation is g1 ({restored['docs']})"
            in message
        )
        assert "run `ops-pipelines sync docs`" in message and "maintenance_job" in message

        sync_collection(kb, store, kb.get_container("docs"))  # the remedy for one container
        assert [p.container for p in serving_report(kb, store).problems] == ["wiki"]
        moved = repair_aliases(kb, store)  # maintenance_job's orphan_repair: every alias
        assert [(m.alias, m.to) for m in moved.aliases] == [("kb_wiki", restored["wiki"])]
        assert serving_report(kb, store).problems == []
        dropped = drop_orphan_collections(kb, store)  # the replaced knowledge base's collections
        assert sorted(c.collection for c in dropped.collections) == ["kb_docs__hash-256-1__g1", "kb_wiki__hash-256-1__g1"]

        store.point_alias("kb_gone", restored["wiki"])  # an alias of a container the restore removed
        (stray,) = serving_report(kb, store).problems
        assert stray.describe() == "alias kb_gone is left for a container that does not exist: run maintenance_job"
        assert [(m.alias, m.to) for m in repair_aliases(kb, store).aliases] == [("kb_gone", None)]
        assert serving_report(kb, store).problems == [] and "kb_gone" not in store.aliases()
