"""What serves each container, read from the asset graph alone: live_alias has exactly one
materialized partition per container, its live version, after a first sync, a swap onto another
version, a rollback and an in-place refresh; live_collection's latest materialization names the
collection the alias serves, never the one it left."""

from __future__ import annotations

import pytest
from dagster import AssetKey

from ops_pipelines.defs.serving import RECONCILED_TAG

LIVE_ALIAS, LIVE_COLLECTION = AssetKey("live_alias"), AssetKey("live_collection")


def green(harness) -> set[str]:
    """The refresh matrix's materialized cells of live_alias."""
    return harness.instance.get_materialized_partitions(LIVE_ALIAS)


def latest(harness, key: AssetKey, partition: str):
    from dagster import AssetRecordsFilter

    records = harness.instance.fetch_materializations(AssetRecordsFilter(key, asset_partitions=[partition]), limit=1).records
    assert records, f"no materialization of {key.to_user_string()} {partition}"
    return records[0].asset_materialization


def facts(materialization) -> dict:
    md = materialization.metadata
    assert md["live_since"].value > 0  # a timestamp
    return {k: md[k].value for k in ("alias", "collection", "embedder_version", "generation")}


@pytest.fixture
def two_live(harness, corpus, extra_embedders):
    for slug in ("docs", "wiki"):
        harness.add_container(slug, corpus)
        harness.sync(slug)
    return harness


def test_a_first_sync_records_what_serves(two_live):
    h = two_live
    assert green(h) == {"docs|hash-256@1", "wiki|hash-256@1"}
    served = {"alias": "kb_docs", "collection": "kb_docs__hash-256-1__g1", "embedder_version": "hash-256@1", "generation": 1}
    assert facts(latest(h, LIVE_ALIAS, "docs|hash-256@1")) == served
    assert facts(latest(h, LIVE_COLLECTION, "docs")) == served
    # reported for the matrix, not a swap: the eval sensor leaves it alone
    assert latest(h, LIVE_ALIAS, "docs|hash-256@1").tags[RECONCILED_TAG] == "reconciled"
    h.sync("docs")  # nothing to reconcile: no second report
    assert len(h.instance.fetch_materializations(LIVE_ALIAS, limit=10).records) == 2


def test_swap_rollback_and_in_place_keep_one_green_version_per_container(two_live):
    h = two_live
    h.refresh("docs", "hash-256@2")
    assert green(h) == {"docs|hash-256@2", "wiki|hash-256@1"}
    on_g2 = {"alias": "kb_docs", "collection": "kb_docs__hash-256-2__g2", "embedder_version": "hash-256@2", "generation": 2}
    assert facts(latest(h, LIVE_COLLECTION, "docs")) == on_g2  # not the collection the alias left
    assert facts(latest(h, LIVE_ALIAS, "docs|hash-256@2")) == on_g2
    assert facts(latest(h, LIVE_ALIAS, "wiki|hash-256@1"))["collection"] == "kb_wiki__hash-256-1__g1"

    h.rollback("docs")
    assert green(h) == {"docs|hash-256@1", "wiki|hash-256@1"}
    on_g1 = {"alias": "kb_docs", "collection": "kb_docs__hash-256-1__g1", "embedder_version": "hash-256@1", "generation": 1}
    assert facts(latest(h, LIVE_COLLECTION, "docs")) == on_g1
    rolled_back = latest(h, LIVE_ALIAS, "docs|hash-256@1")
    assert facts(rolled_back) == on_g1 and rolled_back.metadata["rollback"].value is True
    assert h.serving("docs") == "kb_docs__hash-256-1__g1"

    # In place onto another version of the same dimension: the live generation changes version.
    h.refresh("wiki", "hash-256@2", mode="in_place")
    assert green(h) == {"docs|hash-256@1", "wiki|hash-256@2"}
    assert facts(latest(h, LIVE_COLLECTION, "wiki"))["embedder_version"] == "hash-256@2"
