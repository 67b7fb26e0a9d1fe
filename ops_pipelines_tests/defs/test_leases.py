"""Steps that write a container hold its lease: with another process holding it, a sync, refresh,
swap, rollback, forced import, restore or maintenance repair of that container waits, then fails
naming the holder and writes nothing; another container is synced meanwhile; two runs launched at
once write it in turns."""

from __future__ import annotations

import subprocess
import sys
import time

from dagster import AssetKey, DagsterEventType, RunsFilter

from ops_pipelines.defs.partitions import refresh_partition_key
from ops_pipelines.refresh import SWAP_CHECKS
from ops_pipelines_tests.cli.conftest import home  # noqa: F401 - the fixture
from ops_pipelines_tests.conftest import step_failure_message


def hold(kb_url: str, target: str, holder: str):
    """A process that holds the lease of ``target`` (a container id, or ``kb``) until its stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ops_pipelines_tests.kb.lease_holder", kb_url, target, holder, "5", "60"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    process.stdin.write("go\n")
    process.stdin.flush()
    assert [process.stdout.readline().strip() for _ in range(2)] == ["trying", "held"]
    return process


def test_a_sync_waits_for_the_container_lease_then_names_its_holder(harness, corpus, monkeypatch):
    monkeypatch.setenv("OPS_LEASE_WAIT_SECONDS", "0.5")
    docs = harness.add_container("docs", corpus)
    harness.add_container("other", corpus)
    holder = hold(harness.kb_url, docs.id, "run-of-someone-else")
    try:
        blocked = harness.sync("docs", raise_on_error=False)
        assert not blocked.success
        message = step_failure_message(blocked)
        assert "container 'docs' is being written by run run-of-someone-else" in message
        assert f"pid {holder.pid}" in message
        kb = harness.kb()
        try:
            assert kb.count_documents(docs.id) == {"active": 0, "archived": 0}  # nothing read, nothing written
        finally:
            kb.close()
        assert harness.sync("other").success  # another container is written meanwhile
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert harness.sync("docs").success  # once let go


def test_a_restore_holding_the_whole_knowledge_base_keeps_swaps_out(harness, corpus, monkeypatch):
    monkeypatch.setenv("OPS_LEASE_WAIT_SECONDS", "0.5")
    harness.add_container("docs", corpus)
    harness.sync("docs")
    holder = hold(harness.kb_url, "kb", "restore-run")
    try:
        result = harness.refresh("docs", "hash-256@1", raise_on_error=False)
        assert not result.success
        assert "the whole knowledge base is held by run restore-run" in step_failure_message(result)
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert harness.refresh("docs", "hash-256@1").success


def test_every_writing_operation_waits_for_the_container_lease_then_names_its_holder(
    sqlite_harness, corpus, extra_embedders, monkeypatch
):
    """Swap, rollback, a forced import, a restore and maintenance's repairs, each launched while
    another process holds the container's lease: each fails naming the holder, and serving is as
    it was; once the lease is let go, each goes through."""
    from ops_pipelines_tests.defs.test_backup_jobs import backup, restore
    from ops_pipelines_tests.defs.test_export_jobs import export, import_

    harness = sqlite_harness
    docs = harness.add_container("docs", corpus)
    harness.sync("docs")
    assert harness.refresh("docs", "hash-64@1").success  # g2 live, g1 retained
    assert harness.refresh("docs", "hash-256@1").success  # g3 live
    archive = harness.metadata(export(harness, "docs"), "container_export")["object_key"]
    backup(harness)
    swap = {"partition_key": refresh_partition_key("docs", "hash-256@1"), "asset_selection": [AssetKey("live_alias")]}
    operations = {
        "swap": lambda: harness.job("refresh_job").execute_in_process(
            instance=harness.instance, raise_on_error=False, **swap
        ),
        "rollback": lambda: harness.rollback("docs", raise_on_error=False),
        "import --force": lambda: import_(harness, archive=archive, force=True, raise_on_error=False),
        "restore": lambda: restore(harness, force=True, raise_on_error=False),
        "maintenance": lambda: harness.job("maintenance_job").execute_in_process(
            instance=harness.instance, raise_on_error=False
        ),
    }
    monkeypatch.setenv("OPS_LEASE_WAIT_SECONDS", "0.5")
    serving = harness.serving("docs")
    holder = hold(harness.kb_url, docs.id, "run-of-someone-else")
    try:
        for what, operation in operations.items():
            result = operation()
            assert not result.success, what
            message = step_failure_message(result)
            assert "container 'docs' is being written by run run-of-someone-else" in message, (what, message)
            assert harness.serving("docs") == serving, what
    finally:
        holder.stdin.close()
        holder.wait(30)
    for what, operation in operations.items():
        assert operation().success, what


def test_two_refreshes_of_a_container_launched_at_once_write_it_in_turns(home, tmp_path, extra_embedders):  # noqa: F811
    """Two `ops-pipelines refresh` of one container, each a real run in a process of its own (as
    `dg dev` launches runs), released at the same moment: a run holds the container's lease
    from its first step that writes it (the build) until it ends, so the second builds, checks and
    swaps after the first has swapped, and neither drops the other's build as abandoned."""
    from dagster import DagsterInstance

    from ops_pipelines.kb import KnowledgeBase
    from ops_pipelines.settings import kb_url
    from ops_pipelines_tests.test_health import big_corpus, run

    run("container", "add", "--slug", "docs", "--source", f"folder:{big_corpus(tmp_path / 'big')}", "--embedder", "hash-256@1")
    assert run("sync", "docs")[0] == 0
    kb = KnowledgeBase(kb_url())
    docs = kb.get_container("docs")
    kb.close()
    holder = hold(kb_url(), docs.id, "the-starting-gun")  # both runs queue behind it, then race
    try:
        refreshes = [
            subprocess.Popen(
                [sys.executable, "-m", "ops_pipelines.cli", "refresh", "docs", "--embedder-version", version],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            for version in ("hash-64@1", "hash-256@2")
        ]
        instance = DagsterInstance.get()
        deadline = time.monotonic() + 300
        while len(_lease_waits(instance)) < 2:  # both runs are at their first writing step
            assert time.monotonic() < deadline and all(p.poll() is None for p in refreshes), "the runs did not start"
            time.sleep(0.2)
    finally:
        holder.stdin.close()
        holder.wait(30)
    outputs = [p.communicate(timeout=600)[0] for p in refreshes]
    assert [p.returncode for p in refreshes] == [0, 0], outputs

    (first, a), (second, b) = {run_id: _writing_window(instance, run_id) for run_id in _lease_waits(instance)}.items()
    assert a[1] < b[0] or b[1] < a[0], f"runs {first} and {second} held the container at once: {a}, {b}"
    # the second to take it waited for the first (and maybe both for the starting gun)
    assert any("waited" in m for m in _messages(instance, first) + _messages(instance, second))
    kb = KnowledgeBase(kb_url())
    try:
        assert kb.leases() == []  # both let go when they ended
    finally:
        kb.close()


def _messages(instance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.user_message and "lease of container" in e.user_message]


def _lease_waits(instance) -> list[str]:
    """Runs of refresh_job that have started their first step that writes the container."""
    return [
        r.run_id for r in instance.get_runs(RunsFilter(job_name="refresh_job"))
        if any(e.step_key == "shadow_collection" for e in instance.all_logs(r.run_id, of_type=DagsterEventType.STEP_START))
    ]


def _writing_window(instance, run_id: str) -> tuple[float, float]:
    """When the run took the container's lease and when it let go, from its own log; every step
    that writes the container (build, checks, swap) ran in between."""
    logs = instance.all_logs(run_id)
    (taken,) = [e.timestamp for e in logs if "holds the lease of container docs" in (e.user_message or "")]
    (released,) = [e.timestamp for e in logs if "lets go of the lease of container docs" in (e.user_message or "")]
    done = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION}
    written = [e.timestamp for e in logs if e.is_dagster_event and e.dagster_event_type in done
               and e.step_key != "version_embeddings"]  # the build, its checks, the swap (live_alias, live_collection)
    assert len(written) == 1 + len(SWAP_CHECKS) + 2 and taken <= min(written) and max(written) <= released
    return taken, released
