"""Reconciliation of a collection against what the knowledge base says it must hold.

Each check is a pure function of the expected points (point id -> chunk hash, from the active
chunks) and one scroll of the collection, and returns a ``CheckResult`` with what it found. They
are the gate before an alias swap: every one must pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ops_pipelines.vectors.base import VectorStore

SAMPLE = 10  # ids shown per list in check metadata


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    summary: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionSnapshot:
    """Every point of a collection: ids, their chunk-hash payloads and vectors (row-aligned)."""

    collection: str
    dimension: int | None
    ids: list[str]
    chunk_hashes: list[str | None]
    vectors: np.ndarray

    @classmethod
    def read(cls, store: VectorStore, collection: str) -> CollectionSnapshot:
        """One scroll; each vector goes straight into a float32 array (a point's vector as a
        Python list would take ~7x the memory)."""
        dimension = store.collection_dimension(collection)
        ids: list[str] = []
        hashes: list[str | None] = []
        rows: list[np.ndarray] = []
        for point in store.scroll(collection, with_payload=["chunk_hash"], with_vectors=True):
            ids.append(str(point.id))
            hashes.append((point.payload or {}).get("chunk_hash"))
            rows.append(np.asarray(point.vector, dtype=np.float32))
        vectors = np.stack(rows) if rows else np.zeros((0, dimension or 0), dtype=np.float32)
        return cls(collection, dimension, ids, hashes, vectors)


def point_count(expected: Mapping[str, str], snap: CollectionSnapshot) -> CheckResult:
    found, wanted = len(snap.ids), len(expected)
    return CheckResult(
        "point_count",
        found == wanted,
        f"{found} points, {wanted} active chunks",
        {"points": found, "active_chunks": wanted},
    )


def point_ids(expected: Mapping[str, str], snap: CollectionSnapshot) -> CheckResult:
    present = set(snap.ids)
    missing = sorted(set(expected) - present)
    extra = sorted(present - set(expected))
    duplicates = len(snap.ids) - len(present)
    return CheckResult(
        "point_ids",
        not missing and not extra and not duplicates,
        f"{len(missing)} missing, {len(extra)} extra point ids",
        {"missing": len(missing), "extra": len(extra), "missing_sample": missing[:SAMPLE], "extra_sample": extra[:SAMPLE]},
    )


def vector_dimension(dimension: int, snap: CollectionSnapshot) -> CheckResult:
    wrong = snap.dimension != dimension or (len(snap.ids) > 0 and snap.vectors.shape[1] != dimension)
    return CheckResult(
        "vector_dimension",
        not wrong,
        f"collection is {snap.dimension}-d, the embedder makes {dimension}-d",
        {"collection_dimension": snap.dimension, "embedder_dimension": dimension},
    )


def vector_values(snap: CollectionSnapshot) -> CheckResult:
    if not len(snap.ids):
        return CheckResult("vector_values", True, "no vectors", {"nan": 0, "zero_norm": 0})
    nan = ~np.isfinite(snap.vectors).all(axis=1)
    zero = np.linalg.norm(np.nan_to_num(snap.vectors), axis=1) == 0
    bad = [snap.ids[i] for i in np.flatnonzero(nan | zero)]
    return CheckResult(
        "vector_values",
        not bad,
        f"{int(nan.sum())} vectors with NaN/inf, {int(zero.sum())} zero-norm",
        {"nan": int(nan.sum()), "zero_norm": int(zero.sum()), "sample": bad[:SAMPLE]},
    )


def payload_hashes(expected: Mapping[str, str], snap: CollectionSnapshot) -> CheckResult:
    wrong = [pid for pid, h in zip(snap.ids, snap.chunk_hashes, strict=True) if pid in expected and expected[pid] != h]
    return CheckResult(
        "payload_hashes",
        not wrong,
        f"{len(wrong)} points whose payload chunk hash differs from the chunk",
        {"mismatched": len(wrong), "sample": wrong[:SAMPLE]},
    )


def self_retrieval(
    expected: Mapping[str, str],
    search: Callable[[np.ndarray], str | None],
    cached_vector: Callable[[str], np.ndarray | None],
    sample_size: int = 20,
    seed: int = 0,
) -> CheckResult:
    """A sample of chunks, queried with their cached vectors, must come back first.

    ``search`` returns the point id of the top hit; a tie with another point of the same chunk
    text counts as found (identical text, identical vector).
    """
    ids = sorted(expected)
    rng = np.random.default_rng(seed)
    sample = [ids[i] for i in rng.choice(len(ids), size=min(sample_size, len(ids)), replace=False)] if ids else []
    failed = []
    for pid in sample:
        vector = cached_vector(expected[pid])
        if vector is None or expected.get(search(vector)) != expected[pid]:
            failed.append(pid)
    return CheckResult(
        "self_retrieval",
        not failed,
        f"{len(sample) - len(failed)}/{len(sample)} sampled chunks retrieve themselves at rank 1",
        {"sampled": len(sample), "failed": len(failed), "sample": failed[:SAMPLE]},
    )
