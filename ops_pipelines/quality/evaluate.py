"""How well a collection generation answers a golden set: each query embedded with the
generation's own version (its query prompt included), searched in the generation's collection
(fused with BM25 where the version is hybrid, as a search is), its hits ranked as documents (a
document ranks where its best chunk does), and scored with ir-measures (trec_eval's definitions):
recall@k, MRR@10 and nDCG@10, per query and on average. With ``where``, on one slice of the
container: the searches keep the points whose payload matches, and the queries are those whose
relevant documents are all in the slice.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ops_pipelines.embedders import get_version
from ops_pipelines.embedders import load_embedder as registry_embedder
from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import Container, Generation
from ops_pipelines.quality.golden import GoldenSet
from ops_pipelines.search import ranked
from ops_pipelines.vectors import VectorStore

CHUNKS_PER_DOCUMENT = 5  # chunks searched for each document ranked: enough for k distinct documents


class EmptySlice(OperatorError, LookupError):
    pass


@dataclass(frozen=True)
class QueryResult:
    id: str
    query: str
    recall: float
    reciprocal_rank: float
    ndcg: float
    ranking: tuple[str, ...]  # the k documents found, best first
    top_score: float | None = None  # the best hit's score
    relevant_score: float | None = None  # the best score of a relevant document's hit, None if none was found


@dataclass(frozen=True)
class Evaluation:
    container: str  # slug
    generation: int
    embedder_version: str
    golden_hash: str
    k: int
    queries: tuple[QueryResult, ...]
    search_ms_p50: float
    search_ms_p95: float
    where: Mapping[str, str] | None = None

    @property
    def metrics(self) -> dict[str, float]:
        """The means over the queries: a query that found nothing counts, as 0."""
        return {
            f"recall@{self.k}": statistics.fmean(q.recall for q in self.queries),
            "mrr@10": statistics.fmean(q.reciprocal_rank for q in self.queries),
            "ndcg@10": statistics.fmean(q.ndcg for q in self.queries),
        }


def evaluate_generation(
    store: VectorStore,
    container: Container,
    generation: Generation,
    golden: GoldenSet,
    k: int = 10,
    load_embedder: Callable = registry_embedder,
    where: Mapping[str, str] | None = None,
    in_slice: Callable[[str], bool] | None = None,
) -> Evaluation:
    """``in_slice`` tells whether a source key is in the ``where`` slice (the queries whose relevant
    documents are not all in it are left out)."""
    import ir_measures
    from ir_measures import RR, R, ScoredDoc, nDCG

    if in_slice is not None:
        golden = golden.restricted(lambda q: all(in_slice(key) for key in q.relevant))
        if not golden.queries:
            shown = ", ".join(f"{key.removeprefix('fields.')}={value}" for key, value in (where or {}).items())
            raise EmptySlice(
                f"no query of the golden set has all its relevant documents in the slice {shown} of "
                f"{container.slug!r}: choose another slice, or add queries about its documents to the golden set"
            )
    vectors = load_embedder(generation.embedder_version).embed_queries([q.query for q in golden.queries])
    hybrid = get_version(generation.embedder_version).hybrid
    rankings, latencies = {}, []
    for query, vector in zip(golden.queries, vectors, strict=True):
        started = time.perf_counter()
        hits = ranked(store.search(
            generation.collection, vector, limit=k * CHUNKS_PER_DOCUMENT, text=query.query if hybrid else None, where=where
        ))
        latencies.append((time.perf_counter() - started) * 1000)
        documents: dict[str, float] = {}
        for hit in hits:
            documents.setdefault(str(hit.payload.get("source_key")), hit.score)
        rankings[query.id] = list(documents.items())[:k]
    qrels = [ir_measures.Qrel(q.id, key, grade) for q in golden.queries for key, grade in q.relevant.items()]
    # scores by rank, not cosine: ties between documents are broken the way the ranking broke them
    run = [ScoredDoc(qid, key, float(k - rank)) for qid, docs in rankings.items() for rank, (key, _) in enumerate(docs)]
    found: dict[tuple[str, str], float] = {}
    for metric in ir_measures.iter_calc([R @ k, RR @ 10, nDCG @ 10], qrels, run):
        found[(metric.query_id, str(metric.measure))] = metric.value
    results = tuple(
        QueryResult(
            q.id, q.query,
            recall=found.get((q.id, str(R @ k)), 0.0),
            reciprocal_rank=found.get((q.id, str(RR @ 10)), 0.0),
            ndcg=found.get((q.id, str(nDCG @ 10)), 0.0),
            ranking=tuple(key for key, _ in rankings[q.id]),
            top_score=rankings[q.id][0][1] if rankings[q.id] else None,
            relevant_score=max((score for key, score in rankings[q.id] if q.relevant.get(key, 0) > 0), default=None),
        )
        for q in golden.queries
    )
    ordered = sorted(latencies) or [0.0]
    return Evaluation(
        container.slug, generation.number, generation.embedder_version, golden.content_hash, k, results,
        search_ms_p50=round(statistics.median(ordered), 3),
        search_ms_p95=round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        where=where,
    )
