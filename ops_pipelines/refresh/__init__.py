"""Refresh: build a generation (shadow or in place), gate it with reconciliation checks, swap
the live alias, roll back, apply retention. Plain Python; ``defs/refresh`` wires it to Dagster."""

from ops_pipelines.refresh.build import (
    IN_PLACE,
    SHADOW,
    BuildReport,
    NoChunks,
    RefreshRefused,
    build_generation,
    check_in_place,
    require_chunks,
)
from ops_pipelines.refresh.gate import CHECKS, SWAP_CHECKS, gate_generation, reconcile_generation, refuse_failed_checks
from ops_pipelines.refresh.swap import NothingToRollBack, SwapReport, prune_generations, rollback, swap_to

__all__ = [
    "CHECKS",
    "SWAP_CHECKS",
    "IN_PLACE",
    "SHADOW",
    "BuildReport",
    "NoChunks",
    "NothingToRollBack",
    "RefreshRefused",
    "SwapReport",
    "build_generation",
    "check_in_place",
    "prune_generations",
    "gate_generation",
    "reconcile_generation",
    "refuse_failed_checks",
    "require_chunks",
    "rollback",
    "swap_to",
]
