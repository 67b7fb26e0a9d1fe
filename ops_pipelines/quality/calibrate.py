"""A generation's least search score, calibrated on the golden set: below it a hit is no match.

A search always returns its nearest points, however far: words in no document still get hits
that look as confident as any. The calibration puts the golden queries (the best score of a
relevant document for each) against made-up queries that no document can answer (the best score
of anything for each), and takes the middle of the gap between them when there is one (past at most 5% of the golden
answers): the golden queries keep their answers and every made-up one gets none. Where the two
overlap more it keeps 95% of the golden answers, and says how many made-up queries still get a hit. A version's
``min_score`` in the registry overrides it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ops_pipelines.embedders import get_version
from ops_pipelines.embedders import load_embedder as registry_embedder
from ops_pipelines.kb import Generation
from ops_pipelines.quality.evaluate import Evaluation
from ops_pipelines.vectors import VectorStore

# Queries of invented words: no document of any container answers them.
NO_MATCH_PROBES = (
    "zorvex plintharic quandrelle",
    "mibbleforn yastrune okkeloth",
    "trevanquil osperdane fulmowick",
    "glarnish vexiptor umbrithal",
    "snoravel kwindlestrop pemurance",
    "florbistan quexilaphine drumwhistle",
    "blenthorax yimmerquad sposteline",
    "caprudeth wimbletrax ozzelaine",
    "hunkaploo verstimbric jaxonelle",
    "prindlewash octavorne zembiquill",
    "drossimund kelpaverine tuxmorrow",
    "wembrifold sarquintial nopplestead",
)
GOLDEN_KEPT = 0.95  # where golden and made-up scores overlap: the share of golden answers kept


@dataclass(frozen=True)
class Calibration:
    min_score: float
    golden_answered: float  # share of the golden queries whose relevant document scores at least min_score
    probes_refused: float  # share of the made-up queries whose best hit scores below it
    golden_low: float  # the lowest golden answer's score
    probe_high: float  # the highest made-up query's score

    def metadata(self, prefix: str = "") -> dict:
        return {f"{prefix}{name}": round(value, 4) for name, value in vars(self).items()}


def probe_scores(store: VectorStore, generation: Generation, load_embedder: Callable = registry_embedder) -> list[float]:
    """The best score of each made-up query in the generation's collection (0 when nothing is found)."""
    vectors = load_embedder(generation.embedder_version).embed_queries(list(NO_MATCH_PROBES))
    hybrid = get_version(generation.embedder_version).hybrid
    return [
        max((hit.score for hit in store.search(generation.collection, vector, limit=1, text=probe if hybrid else None)),
            default=0.0)
        for probe, vector in zip(NO_MATCH_PROBES, vectors, strict=True)
    ]


def calibrate(evaluation: Evaluation, probes: list[float]) -> Calibration | None:
    """The least score from an evaluation's golden answers and the made-up queries' scores; None
    if no golden query found a relevant document."""
    golden = sorted(q.relevant_score for q in evaluation.queries if q.relevant_score is not None)
    if not golden:
        return None
    high = max(probes, default=0.0)
    above = [score for score in golden if score > high]
    if len(above) >= GOLDEN_KEPT * len(golden):  # a gap, maybe past a few golden answers: its middle
        min_score = statistics.fmean([high, above[0]])
    else:  # overlap: the highest score that keeps GOLDEN_KEPT of the answers
        min_score = golden[int((1 - GOLDEN_KEPT) * len(golden))]
    return judged(evaluation, probes, min_score)


def judged(evaluation: Evaluation, probes: list[float], min_score: float) -> Calibration:
    """How ``min_score`` splits an evaluation's golden answers and the made-up queries' scores."""
    golden = sorted(q.relevant_score for q in evaluation.queries if q.relevant_score is not None)
    return Calibration(
        min_score=min_score,
        golden_answered=sum(score >= min_score for score in golden) / max(1, len(evaluation.queries)),
        probes_refused=sum(score < min_score for score in probes) / max(1, len(probes)),
        golden_low=golden[0] if golden else 0.0,
        probe_high=max(probes, default=0.0),
    )
