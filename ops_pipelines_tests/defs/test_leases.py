"""Steps that write a container hold its lease: with another process holding it, a sync (or a
swap) of that container waits, then fails naming the holder and writes nothing; another
container is synced meanwhile."""

from __future__ import annotations

import subprocess
import sys

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
