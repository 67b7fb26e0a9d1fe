"""Partition keys from --container / --embedder-version / --partitions, checked before launch."""

from __future__ import annotations

import pytest

from ops_pipelines.remote import BackfillTarget, RemoteError, partition_keys
from ops_pipelines.remote.partitions import (
    CONTAINERS,
    EMBEDDER_VERSIONS,
    Dimension,
    Partitioning,
    partitioning_from_nodes,
)

CONTAINER_DIM = Dimension("container", CONTAINERS, ("alpha", "beta"))
VERSION_DIM = Dimension("embedder_version", EMBEDDER_VERSIONS, ("hash-256@1", "hash-256@2"))
REFRESH = Partitioning("refresh_job", (CONTAINER_DIM, VERSION_DIM))
SYNC = Partitioning("sync_job", (Dimension("default", CONTAINERS, ("alpha", "beta")),))


def test_keys_are_built_in_dimension_order():
    assert REFRESH.key({CONTAINERS: "beta", EMBEDDER_VERSIONS: "hash-256@2"}) == "beta|hash-256@2"
    assert SYNC.key({CONTAINERS: "alpha", EMBEDDER_VERSIONS: None}) == "alpha"


@pytest.mark.parametrize(
    ("partitioning", "values", "message"),
    [
        (REFRESH, {CONTAINERS: "alpha"}, "refresh_job is partitioned by embedder version: pass --embedder-version"),
        (SYNC, {}, "sync_job is partitioned by container: pass --container (known: alpha, beta)"),
        (REFRESH, {CONTAINERS: "gamma", EMBEDDER_VERSIONS: "hash-256@2"}, "container 'gamma' is not a partition"),
        (REFRESH, {CONTAINERS: "alpha", EMBEDDER_VERSIONS: "e5@1"}, "`ops-pipelines embedders sync`"),
        (SYNC, {CONTAINERS: "alpha", EMBEDDER_VERSIONS: "hash-256@2"}, "sync_job is not partitioned by embedder"),
    ],
)
def test_missing_unknown_and_unused_values_are_refused(partitioning, values, message):
    with pytest.raises(RemoteError, match=message.replace("(", r"\(").replace(")", r"\)")):
        partitioning.key(values)


def test_unknown_container_names_the_command_that_adds_it():
    with pytest.raises(RemoteError) as caught:
        SYNC.key({CONTAINERS: "gamma"})
    assert "(known: alpha, beta)" in str(caught.value) and "ops-pipelines container add" in str(caught.value)


def test_a_long_list_of_known_containers_is_cut_short():
    many = Partitioning("sync_job", (Dimension("default", CONTAINERS, tuple(f"kb{i:04}" for i in range(5000))),))
    with pytest.raises(RemoteError) as caught:
        many.key({CONTAINERS: "gamma"})
    assert "kb0019, … (5000 in all)" in str(caught.value) and "kb0020" not in str(caught.value)


def test_full_keys_are_checked_part_by_part():
    REFRESH.check("alpha|hash-256@1")
    with pytest.raises(RemoteError, match=r"keys look like <container>\|<embedder version>"):
        REFRESH.check("alpha")
    with pytest.raises(RemoteError, match="embedder version 'hash-64@1' is not a partition"):
        REFRESH.check("alpha|hash-64@1")


def test_backfill_keys_every_container_under_one_version():
    target = BackfillTarget("refresh_job", REFRESH)
    assert partition_keys(target, all_containers=True, embedder_version="hash-256@2") == [
        "alpha|hash-256@2",
        "beta|hash-256@2",
    ]
    assert partition_keys(target, ["beta|hash-256@1", "beta|hash-256@1"]) == ["beta|hash-256@1"]
    assert partition_keys(BackfillTarget("sync_job", SYNC), all_containers=True) == ["alpha", "beta"]


@pytest.mark.parametrize(
    ("target", "kwargs", "message"),
    [
        (BackfillTarget("refresh_job", REFRESH), {}, "with --partitions, or pass --all-containers"),
        (
            BackfillTarget("refresh_job", REFRESH),
            {"partitions": ["alpha|hash-256@1"], "all_containers": True},
            "one of the two",
        ),
        (BackfillTarget("refresh_job", REFRESH), {"all_containers": True}, "pass --embedder-version"),
        (
            BackfillTarget("refresh_job", REFRESH),
            {"partitions": ["alpha"], "embedder_version": "hash-256@2"},
            "with --partitions give full keys",
        ),
        (BackfillTarget("rollback_job", Partitioning("rollback_job", ())), {"all_containers": True}, "not partitioned"),
        (
            BackfillTarget("sync_job", Partitioning("sync_job", (Dimension("default", CONTAINERS, ()),))),
            {"all_containers": True},
            "there are no containers yet",
        ),
    ],
)
def test_backfill_refuses_what_it_cannot_do(target, kwargs, message):
    with pytest.raises(RemoteError, match=message):
        partition_keys(target, **kwargs)


def _node(dimensions: list[tuple[str, str | None, list[str]]] | None) -> dict:
    """An asset node as the webserver's assetNodes query returns it."""
    if dimensions is None:
        return {"assetKey": {"path": ["x"]}, "partitionDefinition": None, "partitionKeysByDimension": []}
    return {
        "assetKey": {"path": ["x"]},
        "partitionDefinition": {
            "dimensionTypes": [{"name": n, "dynamicPartitionsDefinitionName": d} for n, d, _ in dimensions]
        },
        "partitionKeysByDimension": [{"name": n, "partitionKeys": k} for n, _, k in dimensions],
    }


def test_partitioning_read_from_asset_nodes():
    nodes = [_node([("container", CONTAINERS, ["alpha", "beta"]), ("embedder_version", EMBEDDER_VERSIONS, ["v@1"])])] * 3
    assert partitioning_from_nodes("refresh_job", nodes).dimensions == (
        CONTAINER_DIM,
        Dimension("embedder_version", EMBEDDER_VERSIONS, ("v@1",)),
    )
    assert partitioning_from_nodes("rollback_job", []).dimensions == ()
    with pytest.raises(RemoteError, match="mixes assets partitioned differently"):
        partitioning_from_nodes("live_alias, kb_backup", [nodes[0], _node(None)])
