"""The production path, end to end: dagster-webserver and dagster-daemon run as real processes on
the production instance configuration (deploy/dagster.postgres.yaml: PostgreSQL storage, the run
queue's tag limits, the pools), the knowledge base on PostgreSQL too, and everything is driven the
way operators and other services do it: `ops-pipelines trigger` / `backfill` over GraphQL."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.remote import DagsterRemote
from ops_pipelines_tests.deployment import Deployment, deployment_running, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(1500)]

NEW = "hash-256@2"  # the embedder version the backfill rotates to, registered by this test


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
    with deployment_running(
        tmp_path, monkeypatch, embedders_toml=f'[versions."{NEW}"]\nprovider = "hashing"\ndimension = 256\n'
    ) as running_deployment:
        yield running_deployment


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
