"""Retrieval quality over time: each container's live generation scored on its golden set, with
the figures as numeric metadata, so the asset's plots in the UI show quality across syncs and swaps.
Each materialization also calibrates the live generation's least search score again."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from ops_pipelines.defs.errors import operator_errors
from ops_pipelines.defs.lineage import KB, OWNERS, QDRANT, capability
from ops_pipelines.defs.metadata import rows_table
from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.refresh.assets import live_alias
from ops_pipelines.defs.resources import KnowledgeBaseResource, VectorStoreResource
from ops_pipelines.defs.sync.assets import live_collection
from ops_pipelines.errors import OperatorError
from ops_pipelines.quality import evaluate_generation
from ops_pipelines.quality.calibrate import calibrate, probe_scores
from ops_pipelines.quality.gate import golden_set_in_use, record_min_score


class NothingToEvaluate(OperatorError, LookupError):
    pass


@asset(
    partitions_def=containers_partitions,
    group_name="quality",
    owners=OWNERS,
    tags=capability("quality"),
    kinds={KB, QDRANT},
    deps=[live_collection, live_alias],
    description=(
        "The live generation of a container scored on its golden set (a synthetic one of document titles if it "
        "has none): recall@10, MRR@10, nDCG@10 and search latency, after every sync and swap and on a schedule; "
        "and its least search score, calibrated on the same queries."
    ),
)
def retrieval_eval(context: AssetExecutionContext, kb: KnowledgeBaseResource, vectors: VectorStoreResource) -> MaterializeResult:
    with operator_errors(), kb.open() as store:
        container = store.get_container(context.partition_key)
        live = store.live_generation(container.id)
        golden = golden_set_in_use(store, container)
        if live is None or golden is None:
            raise NothingToEvaluate(
                f"container {container.slug!r} has {'no live generation' if live is None else 'no document'} to "
                f"evaluate yet: sync it first (ops-pipelines sync {container.slug})"
            )
        with vectors.open() as qdrant:
            evaluation = evaluate_generation(qdrant, container, live, golden)
            calibration = calibrate(evaluation, probe_scores(qdrant, live))
        record_min_score(store, container, live, golden, calibration)
    context.log.info(
        "%s g%d %s on the %s: %s", container.slug, live.number, live.embedder_version, golden.label,
        ", ".join(f"{name} {value:.3f}" for name, value in evaluation.metrics.items()),
    )
    columns = ["query_id", "query", "recall", "reciprocal_rank", "ndcg", "top"]
    rows = [
        {"query_id": q.id, "query": q.query, "recall": round(q.recall, 3), "reciprocal_rank": round(q.reciprocal_rank, 3),
         "ndcg": round(q.ndcg, 3), "top": q.ranking[0] if q.ranking else ""}
        for q in evaluation.queries
    ]
    return MaterializeResult(
        metadata={
            **{name: round(value, 4) for name, value in evaluation.metrics.items()},
            "search_ms_p50": evaluation.search_ms_p50,
            "search_ms_p95": evaluation.search_ms_p95,
            "golden_set": golden.label,
            "synthetic": golden.synthetic,
            "generation": live.number,
            "embedder_version": live.embedder_version,
            **(calibration.metadata() if calibration is not None else {}),
            "queries": rows_table(rows, columns),
        }
    )
