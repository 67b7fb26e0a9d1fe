"""The swap gate: reconciliation checks on the generation shadow_collection built, all blocking,
so in refresh_job a failure skips live_alias and the run fails with the alias untouched."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from ops_pipelines.defs.errors import operator_errors
from ops_pipelines.defs.leases import container_writer
from ops_pipelines.defs.metadata import rows_table
from ops_pipelines.defs.partitions import refresh_partition
from ops_pipelines.defs.refresh.assets import built_generation, shadow_collection
from ops_pipelines.defs.resources import KnowledgeBaseResource, VectorStoreResource
from ops_pipelines.refresh import SWAP_CHECKS, gate_generation, refuse_failed_checks


@multi_asset_check(
    specs=[
        AssetCheckSpec(name, asset=shadow_collection, description=description, blocking=True)
        for name, description in SWAP_CHECKS.items()
    ],
    description=(
        "Reconcile the built generation against the container's active chunks, then measure it on the "
        "container's golden set against the live one."
    ),
)
def shadow_collection_checks(
    context: AssetCheckExecutionContext, kb: KnowledgeBaseResource, vectors: VectorStoreResource
):
    slug, version = refresh_partition(context.op_execution_context.partition_key)
    with (
        operator_errors(),
        kb.open() as store,
        container_writer(context.op_execution_context, store, slug) as container,
        vectors.open() as qdrant,
    ):
        generation = built_generation(context.op_execution_context, store, container)
        results = gate_generation(store, qdrant, container, generation)
    for result in results:
        context.log.info("%s %s: %s", result.name, "passed" if result.passed else "FAILED", result.summary)
        yield AssetCheckResult(
            asset_key=shadow_collection.key,
            check_name=result.name,
            passed=result.passed,
            severity=AssetCheckSeverity.ERROR,
            # A check result shows no partition in the UI: it says whom it is about itself.
            description=f"{slug} {version} (g{generation.number}): {result.summary}",
            metadata={
                "container": slug,
                "embedder_version": version,
                "collection": generation.collection,
                "generation": generation.number,
                **{k: _metadata_value(v) for k, v in result.details.items()},
            },
        )
    # The step fails in the operator's words (Dagster's own blocking failure names only the checks).
    with operator_errors():
        refuse_failed_checks(container, generation, results)


def _metadata_value(value):
    """Rows (a list of dicts, such as retrieval_quality's changed queries) as a table the UI shows
    as one; other lists as JSON."""
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        return rows_table(value, list(value[0]))
    return MetadataValue.json(value) if isinstance(value, list) else value
