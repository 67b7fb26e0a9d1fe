"""The retrieval-quality check of the swap gate: a generation about to be swapped in must answer
the container's golden set about as well as the live one does, each embedding the queries with
its own version. With no golden set registered, a synthetic one is used: each document's title as
the query for that document (labelled synthetic wherever it is reported). With nothing live to
compare with (a first build, or an in-place refresh of the live generation), the generation is
held to an absolute recall@10 floor instead (``OPS_QUALITY_FLOOR``, 0 by default). A container's
own bounds (``ops-pipelines eval gate``) replace both defaults. The check also calibrates the
generation's least search score on the same queries (``quality.calibrate``) and records it when
the golden set is a real one.
"""

from __future__ import annotations

import hashlib
import json

from ops_pipelines import settings
from ops_pipelines.kb import Container, Generation, KnowledgeBase
from ops_pipelines.quality.calibrate import Calibration, calibrate, probe_scores
from ops_pipelines.quality.evaluate import Evaluation, evaluate_generation
from ops_pipelines.quality.golden import GoldenQuery, GoldenSet
from ops_pipelines.quality.sets import current_golden_set, lacking_documents
from ops_pipelines.vectors import VectorStore
from ops_pipelines.vectors.reconcile import CheckResult

RETRIEVAL_QUALITY = "retrieval_quality"
DESCRIPTION = (
    "Recall@10, MRR@10 and nDCG@10 on the container's golden set (a synthetic one of document titles if it has "
    "none) are no worse than the live generation's beyond the container's tolerance (OPS_QUALITY_TOLERANCE by "
    "default); with nothing live, recall@10 reaches its floor (OPS_QUALITY_FLOOR). Records the generation's "
    "calibrated least search score."
)
SYNTHETIC_QUERIES = 50


def synthetic_golden_set(kb: KnowledgeBase, container: Container) -> GoldenSet | None:
    """Up to 50 active documents, spread over the container in source-key order, each queried by
    its title; None if the container has no document with a title."""
    titles = kb.document_titles(container.id)
    step = max(1, len(titles) // SYNTHETIC_QUERIES)
    chosen = [(key, title) for key, title in titles[::step] if title.strip()][:SYNTHETIC_QUERIES]
    if not chosen:
        return None
    queries = tuple(GoldenQuery(key, title, {key: 1}) for key, title in chosen)
    digest = hashlib.sha256(json.dumps(chosen).encode()).hexdigest()
    return GoldenSet(queries, digest, synthetic=True)


def golden_set_in_use(kb: KnowledgeBase, container: Container) -> GoldenSet | None:
    """The container's golden set, else a synthetic one; None if it has no document with a title."""
    return current_golden_set(kb, container) or synthetic_golden_set(kb, container)


def record_min_score(
    kb: KnowledgeBase, container: Container, generation: Generation, golden: GoldenSet, calibration: Calibration | None
) -> None:
    """Record the calibrated least score on the generation, if a real golden set calibrated it: a
    synthetic set's titles are easier queries than users' questions, and would set it too high."""
    if not golden.synthetic:
        kb.set_min_score(container.id, generation.number, calibration and calibration.min_score)


def retrieval_quality(kb: KnowledgeBase, store: VectorStore, container: Container, generation: Generation) -> CheckResult:
    golden = golden_set_in_use(kb, container)
    if golden is None:
        return CheckResult(RETRIEVAL_QUALITY, True, "not measured: the container has no document to query")
    lacking = lacking_documents(kb, container, golden)
    if lacking:
        return CheckResult(
            RETRIEVAL_QUALITY, False,
            f"the {golden.label} names {len(lacking)} source key(s) {container.slug!r} no longer has ("
            f"{', '.join(lacking[:5])}): register a golden set that matches its documents "
            f"(ops-pipelines eval set {container.slug} FILE)",
            {"golden_set": golden.label, "lacking": lacking[:100]},
        )
    built = evaluate_generation(store, container, generation, golden)
    calibration = calibrate(built, probe_scores(store, generation))
    record_min_score(kb, container, generation, golden, calibration)
    live = kb.live_generation(container.id)
    comparable = (
        live is not None and live.collection != generation.collection
        and store.collection_dimension(live.collection) is not None
    )
    bounds = kb.quality_bounds(container.id)
    if not comparable:
        floor = settings.quality_floor() if bounds.floor is None else bounds.floor
        result = _against_floor(built, golden, floor)
    else:
        tolerance = settings.quality_tolerance() if bounds.tolerance is None else bounds.tolerance
        result = _against_live(built, evaluate_generation(store, container, live, golden), golden, tolerance)
    if calibration is not None:
        result.details.update(calibration.metadata("shadow_"))
    return result


def _figures(prefix: str, evaluation: Evaluation) -> dict:
    return {f"{prefix}_{name}": round(value, 4) for name, value in evaluation.metrics.items()}


def _against_floor(built: Evaluation, golden: GoldenSet, floor: float) -> CheckResult:
    recall = built.metrics["recall@10"]
    passed = recall >= floor
    summary = (
        f"recall@10 {recall:.3f} {'>=' if passed else '<'} floor {floor:.2f} on the {golden.label}; nothing live to "
        "compare with"
    )
    details = {"golden_set": golden.label, "synthetic": golden.synthetic, "floor": floor, **_figures("shadow", built)}
    return CheckResult(RETRIEVAL_QUALITY, passed, summary, details)


def _against_live(built: Evaluation, live: Evaluation, golden: GoldenSet, tolerance: float) -> CheckResult:
    deltas = {name: built.metrics[name] - value for name, value in live.metrics.items()}
    worse = [name for name, delta in deltas.items() if delta < -tolerance - 1e-9]
    compared = ", ".join(f"{name} {built.metrics[name]:.3f} vs live {live.metrics[name]:.3f}" for name in deltas)
    if worse:
        summary = (
            f"worse than live g{live.generation} ({live.embedder_version}) beyond the tolerance of {tolerance:.2f} in "
            f"{', '.join(worse)} on the {golden.label}: {compared}"
        )
    else:
        summary = f"as good as live g{live.generation} within {tolerance:.2f} on the {golden.label}: {compared}"
    changed = [
        {
            "query_id": b.id, "query": b.query, "live_recall": round(a.recall, 3), "shadow_recall": round(b.recall, 3),
            "live_top": a.ranking[0] if a.ranking else None, "shadow_top": b.ranking[0] if b.ranking else None,
        }
        for a, b in zip(live.queries, built.queries, strict=True)
        if a.recall != b.recall
    ]
    details = {
        "golden_set": golden.label, "synthetic": golden.synthetic, "tolerance": tolerance,
        "live_generation": live.generation, "live_embedder_version": live.embedder_version,
        **_figures("shadow", built), **_figures("live", live),
        **{f"delta_{name}": round(delta, 4) for name, delta in deltas.items()},
        "queries_lost": sum(1 for row in changed if row["shadow_recall"] < row["live_recall"]),
        "queries_gained": sum(1 for row in changed if row["shadow_recall"] > row["live_recall"]),
        "changed_queries": changed[:100],
    }
    return CheckResult(RETRIEVAL_QUALITY, not worse, summary, details)
