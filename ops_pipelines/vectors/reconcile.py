"""Reconciliation of a collection against what the knowledge base says it must hold.

The content checks (``ContentScan``) take the collection's points batch by batch, so memory
stays flat at any size: ids are kept as an id array (``vectors.ids``), vectors are checked and
dropped. What the points must be is the sorted id array of the active chunks' point ids: a point
id is made of the container, document, ordinal and chunk hash, so a point whose payload gives
back its own id carries the right chunk hash. ``self_retrieval`` then searches the collection.
Each check returns a ``CheckResult``; they are the gate before an alias swap: every one must pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ops_pipelines.vectors.base import Hit, PointPage
from ops_pipelines.vectors.ids import id_set, id_strings, locate, point_id_array

SAMPLE = 10  # ids shown per list in check metadata
# The payload fields a point id is made of, with the container id.
ID_FIELDS = ["document_id", "ordinal", "chunk_hash"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    summary: str
    details: dict = field(default_factory=dict)


class ContentScan:
    """point_count, point_ids, vector_dimension, vector_values and payload_hashes, over points
    added a batch at a time (``add``), against ``expected``: the sorted id array of the points of
    container ``container_id``'s active chunks."""

    def __init__(self, container_id: str, expected: np.ndarray, dimension: int, collection_dimension: int | None):
        self.container_id, self.expected = container_id, expected
        self.dimension, self.collection_dimension = dimension, collection_dimension
        # What was seen, flat at any size: a mark per expected id, and the ids nobody expects.
        self._found = np.zeros(len(expected), dtype=bool)
        self._extra: list[np.ndarray] = []
        self.duplicates = 0
        self.points = 0
        self._wrong_shape = False
        self.nan, self.zero, self._bad_vectors = 0, 0, []
        self.mismatched, self._bad_payloads = 0, []

    def add(self, ids: np.ndarray, payloads: Sequence[dict | None], vectors: np.ndarray) -> None:
        """A batch: ``ids`` as an id array (``vectors.ids``), row i of ``vectors`` is point i."""
        known, at = locate(self.expected, ids)
        marked = at[known]
        # a repeat: marked already, or twice in this batch
        self.duplicates += int(self._found[marked].sum()) + len(marked) - len(np.unique(marked))
        self._found[marked] = True
        if not known.all():
            self._extra.append(ids[~known])
        self.points += len(ids)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        if len(ids) and vectors.shape[1] != self.dimension:
            self._wrong_shape = True
        nan = ~np.isfinite(vectors).all(axis=1)
        zero = np.linalg.norm(np.nan_to_num(vectors), axis=1) == 0
        self.nan, self.zero = self.nan + int(nan.sum()), self.zero + int(zero.sum())
        self._bad_vectors += id_strings(ids[nan | zero][:SAMPLE])
        made = point_id_array(self.container_id, [_id_fields(p) for p in payloads])
        wrong = known & (made != ids)
        self.mismatched += int(wrong.sum())
        self._bad_payloads += id_strings(ids[wrong][: SAMPLE - len(self._bad_payloads)])

    def add_pages(self, pages: Iterable[PointPage]) -> None:
        for page in pages:
            self.add(page.ids, page.payloads, page.vectors)

    def results(self) -> list[CheckResult]:
        extra_seen = np.concatenate(self._extra) if self._extra else self.expected[:0]
        extra = id_set([extra_seen])
        duplicates = self.duplicates + len(extra_seen) - len(extra)
        missing = self.expected[~self._found]
        wrong_dimension = self.collection_dimension != self.dimension or self._wrong_shape
        wanted = len(self.expected)
        return [
            CheckResult(
                "point_count",
                self.points == wanted,
                f"{self.points} points, {wanted} active chunks",
                {"points": self.points, "active_chunks": wanted},
            ),
            CheckResult(
                "point_ids",
                not len(missing) and not len(extra) and not duplicates,
                f"{len(missing)} missing, {len(extra)} extra point ids"
                + (f", {duplicates} repeated" if duplicates else ""),
                {
                    "missing": len(missing),
                    "extra": len(extra),
                    "missing_sample": id_strings(missing[:SAMPLE]),
                    "extra_sample": id_strings(extra[:SAMPLE]),
                },
            ),
            CheckResult(
                "vector_dimension",
                not wrong_dimension,
                f"collection is {self.collection_dimension}-d, the embedder makes {self.dimension}-d",
                {"collection_dimension": self.collection_dimension, "embedder_dimension": self.dimension},
            ),
            CheckResult(
                "vector_values",
                not self.nan and not self.zero,
                f"{self.nan} vectors with NaN/inf, {self.zero} zero-norm" if self.points else "no vectors",
                {"nan": self.nan, "zero_norm": self.zero, **({"sample": self._bad_vectors[:SAMPLE]} if self.points else {})},
            ),
            CheckResult(
                "payload_hashes",
                not self.mismatched,
                f"{self.mismatched} points whose payload chunk hash differs from the chunk",
                {"mismatched": self.mismatched, "sample": self._bad_payloads},
            ),
        ]


def _id_fields(payload: dict | None) -> tuple:
    payload = payload or {}
    return tuple(payload.get(key) for key in ID_FIELDS)


def self_retrieval(
    sample: Sequence[tuple[str, str]],
    search: Callable[[np.ndarray], Hit | None],
    cached_vector: Callable[[str], np.ndarray | None],
) -> CheckResult:
    """Each sampled chunk (point id, chunk hash), queried with its cached vector, must come back
    first; a tie with another point of the same chunk text counts as found (identical text,
    identical vector). ``search`` returns the top hit."""
    failed = []
    for pid, chunk in sample:
        vector = cached_vector(chunk)
        top = search(vector) if vector is not None else None
        if top is None or (top.id != pid and (top.payload or {}).get("chunk_hash") != chunk):
            failed.append(pid)
    return CheckResult(
        "self_retrieval",
        not failed,
        f"{len(sample) - len(failed)}/{len(sample)} sampled chunks retrieve themselves at rank 1",
        {"sampled": len(sample), "failed": len(failed), "sample": failed[:SAMPLE]},
    )
