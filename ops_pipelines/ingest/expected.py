"""What a container's live collection must hold, read from the metadata DB in one streamed pass:
the point id of every active chunk, as a sorted id array (``vectors.ids``), and a fixed sample
of (point id, chunk hash) for the checks' searches."""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass

import numpy as np

from ops_pipelines.kb import Container, KnowledgeBase
from ops_pipelines.vectors.ids import id_set, point_id_array

SAMPLE = 20


@dataclass(frozen=True)
class ExpectedPoints:
    container_id: str
    ids: np.ndarray  # sorted, distinct
    sample: tuple[tuple[str, str], ...]  # (point id, chunk hash): the smallest ids, a uniform sample of uuid5s

    def __len__(self) -> int:
        return len(self.ids)


def expected_points(kb: KnowledgeBase, container: Container, chunker: str, sample_size: int = SAMPLE) -> ExpectedPoints:
    """The points of the container's active chunks that ``chunker`` cut (a generation's version's)."""
    parts: list[np.ndarray] = []
    candidates: list[tuple[bytes, str]] = []
    for batch in kb.chunk_keys(container.id, chunker):
        ids = point_id_array(container.id, batch)
        parts.append(ids)
        smallest = [(bytes(ids[i]).ljust(16, b"\0"), batch[i][2]) for i in np.argsort(ids)[:sample_size]]
        candidates = heapq.nsmallest(sample_size, candidates + smallest)
    sample = tuple((str(uuid.UUID(bytes=b)), chunk) for b, chunk in candidates)
    return ExpectedPoints(container.id, id_set(parts), sample)
