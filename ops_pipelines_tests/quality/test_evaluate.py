"""Evaluating generations on a golden set: the metrics are trec_eval's (through ir-measures), on
real collections built by sync and refresh."""

from __future__ import annotations

import pytest

from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.quality import evaluate_generation, parse_golden_set

GOLDEN = "\n".join([
    '{"id": "apples", "query": "apples and orchards", "relevant": ["alpha.md"]}',
    '{"id": "bikes", "query": "bicycles gears chains", "relevant": ["beta.md"]}',
    '{"id": "ice", "query": "glaciers and mountain valleys", "relevant": {"gamma.md": 2, "delta.md": 1}}',
    '{"id": "none", "query": "quantum chromodynamics", "relevant": ["notes/epsilon.txt"]}',
]) + "\n"


def test_a_generation_is_scored_per_query_and_on_average(harness, corpus):
    harness.add_container("docs", corpus)
    harness.sync("docs")
    kb = KnowledgeBase(harness.kb_url)
    try:
        container = kb.get_container("docs")
        live = kb.live_generation(container.id)
        with harness.vector_store() as store:
            evaluation = evaluate_generation(store, container, live, parse_golden_set(GOLDEN), k=3)
    finally:
        kb.close()
    by_id = {q.id: q for q in evaluation.queries}
    assert by_id["apples"].ranking[0] == "alpha.md" and by_id["apples"].reciprocal_rank == 1.0
    assert by_id["apples"].recall == 1.0 and by_id["apples"].ndcg == pytest.approx(1.0)
    assert by_id["ice"].ranking[0] == "gamma.md"
    # epsilon shares no word with the query: whatever the hashing embedder ranks, it is a guess
    assert all(len(q.ranking) == 3 for q in evaluation.queries)
    metrics = evaluation.metrics
    assert set(metrics) == {"recall@3", "mrr@10", "ndcg@10"}
    assert metrics["mrr@10"] == pytest.approx(sum(q.reciprocal_rank for q in evaluation.queries) / 4)
    assert evaluation.search_ms_p50 > 0 and evaluation.generation == 1
