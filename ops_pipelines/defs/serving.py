"""What serves each container, as the asset graph shows it.

``live_alias`` is partitioned by (container, embedder version), and the refresh matrix colours a
partition green once it has been materialized, for good: OSS Dagster cannot wipe one partition.
So that the matrix shows what serves, not what once did, its materialized partitions are
reconciled with the knowledge base after every sync, swap and rollback: exactly one per container,
its live generation's. When a partition is no longer live (a swap onto another version, a
rollback, an in-place refresh), the asset's index is wiped and the live partitions reported again
(the runs keep their own events; ``ops-pipelines generations`` keeps the history). Each such
report carries the serving facts and the ``ops/serving`` tag, which the eval sensor ignores.

A swap or rollback also records a ``live_collection`` materialization of the container with the
same facts, so that asset never names a collection the alias has left.
"""

from __future__ import annotations

from dagster import AssetKey, AssetMaterialization, MetadataValue

from ops_pipelines.defs.partitions import refresh_partition_key
from ops_pipelines.kb import Container, Generation, KnowledgeBase
from ops_pipelines.kb.source_state import as_utc
from ops_pipelines.vectors.base import alias_name

LIVE_ALIAS = AssetKey("live_alias")
LIVE_COLLECTION = AssetKey("live_collection")
RECONCILED_TAG = "ops/serving"


def serving_metadata(container: Container, generation: Generation) -> dict:
    """Alias, collection, embedder version, generation and since when it serves."""
    metadata = {
        "alias": alias_name(container.slug),
        "collection": generation.collection,
        "embedder_version": generation.embedder_version,
        "generation": generation.number,
    }
    if generation.activated_at is not None:
        metadata["live_since"] = MetadataValue.timestamp(as_utc(generation.activated_at))
    return metadata


def live_partitions(store: KnowledgeBase) -> dict[str, tuple[Container, Generation]]:
    """The ``live_alias`` partition key of every container's live generation."""
    generations = store.live_generations()
    return {
        str(refresh_partition_key(container.slug, generation.embedder_version)): (container, generation)
        for container in store.list_containers()
        if (generation := generations.get(container.id)) is not None
    }


def reconcile_live_alias(instance, store: KnowledgeBase, log, recorded_by_caller: str | None = None) -> None:
    """Make ``live_alias``'s materialized partitions the live ones. ``recorded_by_caller``: the
    partition the calling step materializes itself right after (the swap), left to it."""
    live = live_partitions(store)
    materialized = instance.get_materialized_partitions(LIVE_ALIAS)
    if stale := materialized - live.keys() - {recorded_by_caller}:
        log.info("live_alias: %s no longer served; its partitions are reported again", ", ".join(sorted(stale)))
        instance.wipe_assets([LIVE_ALIAS])
        materialized = set()
    for key in sorted(live.keys() - materialized - {recorded_by_caller}):
        container, generation = live[key]
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=LIVE_ALIAS,
                partition=key,
                description=f"{alias_name(container.slug)} serves {generation.collection}",
                metadata=serving_metadata(container, generation),
                tags={RECONCILED_TAG: "reconciled"},
            )
        )


def live_collection_event(container: Container, generation: Generation, description: str) -> AssetMaterialization:
    """``live_collection`` of ``container`` as a swap or rollback leaves it."""
    return AssetMaterialization(
        asset_key=LIVE_COLLECTION,
        partition=container.slug,
        description=description,
        metadata=serving_metadata(container, generation),
    )
