"""Retrieval quality: golden query sets and how well a generation answers them. No Dagster imports."""

from ops_pipelines.quality.evaluate import Evaluation, evaluate_generation
from ops_pipelines.quality.golden import GoldenQuery, GoldenSet, InvalidGoldenSet, parse_golden_set
from ops_pipelines.quality.sets import current_golden_set, register_golden_set

__all__ = [
    "Evaluation",
    "GoldenQuery",
    "GoldenSet",
    "InvalidGoldenSet",
    "current_golden_set",
    "evaluate_generation",
    "parse_golden_set",
    "register_golden_set",
]
