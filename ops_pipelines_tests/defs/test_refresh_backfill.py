"""Model rotation the way an operator runs it: an asset backfill of a new embedder version over
every container, submitted through Dagster's GraphQL API (the mutation the UI sends) and carried
out by the daemon's backfill logic, with runs launched in the code location's own gRPC server."""

from __future__ import annotations

import logging
import time

from dagster import DagsterEventType, instance_for_test
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from ops_pipelines.defs.partitions import embedder_versions_partitions
from ops_pipelines_tests.conftest import SyncHarness

NEW = "hash-256@2"


def test_backfill_of_a_new_version_swaps_every_container_that_passes(tmp_path, corpus, monkeypatch, extra_embedders):
    empty = tmp_path / "empty"
    empty.mkdir()
    home = tmp_path / "home"
    # The code server (a subprocess) builds its resources from these, like production does.
    for name, value in {
        "OPS_KB_URL": f"sqlite:///{tmp_path / 'kb.sqlite'}",
        "OPS_QDRANT_PATH": str(home / "qdrant"),
        "OPS_OBJECTS_DIR": str(home / "objects"),
    }.items():
        monkeypatch.setenv(name, value)

    # Runs launch as the backfill submits them (the queue and its limits are the e2e test's).
    coordinator = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    with instance_for_test(overrides={"run_coordinator": coordinator}) as instance:
        harness = SyncHarness(kb_url=f"sqlite:///{tmp_path / 'kb.sqlite'}", home=home, instance=instance)
        for slug in ("alpha", "beta"):
            harness.add_container(slug, corpus, embedder="hash-64@1")
            assert harness.sync(slug).success
        harness.add_container("hollow", empty, embedder="hash-64@1")  # nothing to rebuild
        instance.add_dynamic_partitions(embedder_versions_partitions.name, [NEW])

        target = ModuleTarget("ops_pipelines.definitions", "defs", None, "ops-pipelines")
        with create_test_daemon_workspace_context(target, instance) as workspace:
            launched = execute_dagster_graphql(
                workspace.create_request_context(),
                LAUNCH_PARTITION_BACKFILL_MUTATION,
                variables={
                    "backfillParams": {
                        "partitionNames": [f"{slug}|{NEW}" for slug in ("alpha", "beta", "hollow")],
                        "assetSelection": [
                            {"path": [name]} for name in ("version_embeddings", "shadow_collection", "live_alias")
                        ],
                        "title": f"rotate to {NEW}",
                    }
                },
            ).data["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            backfill = wait_for_backfill(instance, workspace, launched["backfillId"])

        assert backfill.status == BulkActionStatus.COMPLETED_FAILED  # hollow failed, as it must
        runs = instance.get_runs()
        assert {r.tags["dagster/partition"]: r.status.value for r in runs if "dagster/backfill" in r.tags} == {
            f"alpha|{NEW}": "SUCCESS",
            f"beta|{NEW}": "SUCCESS",
            f"hollow|{NEW}": "FAILURE",
        }
        for run in runs:
            if run.tags.get("dagster/partition") == f"alpha|{NEW}":  # the gate ran inside the run
                checks = instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
                assert len(checks) == 6
        for slug in ("alpha", "beta"):
            assert harness.serving(slug) == f"kb_{slug}__hash-256-2__g2"
        with harness.vector_store() as store:
            assert store.collection_dimension("kb_alpha__hash-256-2__g2") == 256
            assert store.count("kb_beta__hash-256-2__g2") == 5
            assert store.resolve_alias("kb_hollow") is None
        kb = harness.kb()
        try:
            assert {c.slug: c.embedder_version for c in kb.list_containers()} == {
                "alpha": NEW, "beta": NEW, "hollow": "hash-64@1",
            }
        finally:
            kb.close()


def wait_for_backfill(instance, workspace, backfill_id: str, timeout: float = 240.0):
    """Run the daemon's backfill iterations until the backfill and its runs are done."""
    deadline = time.monotonic() + timeout
    logger = logging.getLogger("backfill-test")
    while time.monotonic() < deadline:
        list(execute_backfill_iteration(workspace, logger))
        backfill = instance.get_backfill(backfill_id)
        runs = instance.get_runs()
        if backfill.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.FAILING) and all(
            r.is_finished for r in runs if r.tags.get("dagster/backfill") == backfill_id
        ):
            return backfill
        time.sleep(0.5)
    raise AssertionError(f"backfill {backfill_id} not done in {timeout}s: {instance.get_backfill(backfill_id).status}")
