"""Qdrant access: collection generations behind a live alias, idempotent point writes, search.

Local mode (``path=``) is the embedded default. It allows one open client per folder, so every
user opens the store for one operation and closes it (``open_vector_store``), and waits a while
for another process's operation to finish rather than failing at once.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from qdrant_client import QdrantClient, models

from ops_pipelines.errors import VectorStoreBusy
from ops_pipelines.vectors import local_load
from ops_pipelines.vectors.local_load import PointBatch

_POINT_NAMESPACE = uuid.UUID("6f1c7d2e-4b1a-5c8e-9d0f-0a1b2c3d4e5f")
_UNSAFE = re.compile(r"[^a-z0-9-]+")


class DimensionMismatch(ValueError):
    pass


def alias_name(slug: str) -> str:
    """The name searchers use for a container."""
    return f"kb_{slug}"


def generation_name(slug: str, embedder_version: str, generation: int) -> str:
    return f"kb_{slug}__{_UNSAFE.sub('-', embedder_version.lower()).strip('-')}__g{generation}"


def point_id(container_id: str, document_id: str, ordinal: int, chunk_hash: str) -> str:
    """Deterministic: the same chunk of the same document always lands on the same point."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{container_id}/{document_id}/{ordinal}/{chunk_hash}"))


# An upsert costs about as much as reading this many stored points back on a reopen.
BULK_LOAD_BREAK_EVEN = 15


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict


class VectorStore:
    def __init__(self, client: QdrantClient, local_path: str | None = None, wait_seconds: float = 120.0):
        self.client = client
        self.local_path = local_path  # the local-mode folder, None for a server or ``:memory:``
        self.wait_seconds = wait_seconds

    def collection_dimension(self, name: str) -> int | None:
        if not self.client.collection_exists(name):
            return None
        vectors = self.client.get_collection(name).config.params.vectors
        return vectors.size

    def ensure_collection(self, name: str, dimension: int) -> bool:
        """Create ``name`` for ``dimension``-d cosine vectors; True if it was created."""
        existing = self.collection_dimension(name)
        if existing is None:
            self.client.create_collection(
                name,
                vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                on_disk_payload=True,
            )
            return True
        if existing != dimension:
            raise DimensionMismatch(
                f"collection {name} holds {existing}-d vectors, the embedder makes {dimension}-d"
            )
        return False

    def drop_collection(self, name: str) -> bool:
        """Delete ``name`` if it exists; True if it did."""
        if not self.client.collection_exists(name):
            return False
        self.client.delete_collection(name)
        return True

    def collection_names(self) -> list[str]:
        """Every collection in the store, ours or not, sorted."""
        return sorted(c.name for c in self.client.get_collections().collections)

    def aliases(self) -> dict[str, str]:
        """Every alias in the store -> the collection it points at."""
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def resolve_alias(self, alias: str) -> str | None:
        return self.aliases().get(alias)

    def point_alias(self, alias: str, collection: str) -> None:
        """Move ``alias`` to ``collection`` in one atomic alias update."""
        ops: list = []
        if self.resolve_alias(alias) is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
            )
        )
        self.client.update_collection_aliases(change_aliases_operations=ops)

    def replace_aliases(self, wanted: dict[str, str], prefix: str) -> None:
        """In one atomic update: remove every alias starting with ``prefix``, then create
        ``wanted`` (alias -> collection)."""
        ops: list = [
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=a.alias_name))
            for a in self.client.get_aliases().aliases
            if a.alias_name.startswith(prefix)
        ]
        ops += [
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
            for alias, collection in sorted(wanted.items())
        ]
        if ops:
            self.client.update_collection_aliases(change_aliases_operations=ops)

    def scroll(
        self, collection: str, with_payload: bool | list[str] = False, with_vectors: bool = False, page: int = 4096
    ) -> Iterator[models.Record]:
        """Every point of ``collection``, page by page."""
        offset = None
        while True:
            points, offset = self.client.scroll(
                collection, limit=page, offset=offset, with_payload=with_payload, with_vectors=with_vectors
            )
            yield from points
            if offset is None:
                return

    def point_ids(self, collection: str) -> set[str]:
        return {str(p.id) for p in self.scroll(collection)}

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict],
        batch_size: int = 256,
    ) -> None:
        for start in range(0, len(ids), batch_size):
            end = start + batch_size
            self.client.upsert(
                collection,
                points=models.Batch(
                    ids=list(ids[start:end]),
                    vectors=np.asarray(vectors[start:end], dtype=np.float32).tolist(),
                    payloads=list(payloads[start:end]),
                ),
                wait=True,
            )

    def load_collection(
        self, name: str, dimension: int, batches: Iterable[PointBatch], points: int | None = None
    ) -> int:
        """Create ``name`` and write all its points, given as batches of (ids, vectors, payloads);
        returns how many. In local mode in one transaction (see ``local_load``) when that is the
        cheaper way, else by upserts (always on a server). ``points``, if known, is how many there
        will be."""
        if not self.ensure_collection(name, dimension):
            raise ValueError(f"collection {name} already exists: load_collection only fills new ones")
        if not self._bulk_load_pays(name, points):
            written = 0
            for ids, vectors, payloads in batches:
                self.upsert(name, ids, vectors, payloads)
                written += len(ids)
            return written
        self.client.close()
        try:
            return local_load.write_points(self.local_path, name, batches)
        finally:
            self.client = _open_local(self.local_path, self.wait_seconds)

    def _bulk_load_pays(self, name: str, points: int | None) -> bool:
        """Local mode's bulk load reopens the client, which reads every point of the folder back
        (about 75 us each), where an upsert costs about 1 ms a point: a few points beside many
        are upserted."""
        if self.local_path is None or not local_load.local_load_supported(self.local_path, name):
            return False
        if points is None:
            return True
        stored = sum(self.count(c.name) for c in self.client.get_collections().collections)
        return points * BULK_LOAD_BREAK_EVEN >= stored

    def delete(self, collection: str, ids: Sequence[str], batch_size: int = 1024) -> None:
        for start in range(0, len(ids), batch_size):
            self.client.delete(
                collection,
                points_selector=models.PointIdsList(points=list(ids[start : start + batch_size])),
                wait=True,
            )

    def count(self, collection: str) -> int:
        return self.client.count(collection, exact=True).count

    def search(self, collection: str, vector: np.ndarray, limit: int = 5) -> list[Hit]:
        response = self.client.query_points(
            collection, query=np.asarray(vector, dtype=np.float32).tolist(), limit=limit, with_payload=True
        )
        return [Hit(str(p.id), p.score, p.payload or {}) for p in response.points]


@contextmanager
def open_vector_store(
    url: str | None = None,
    api_key: str | None = None,
    path: str | None = None,
    wait_seconds: float = 120.0,
) -> Iterator[VectorStore]:
    """A Qdrant server at ``url``, or local mode in folder ``path``; closed on exit."""
    if url:
        store = VectorStore(QdrantClient(url=url, api_key=api_key, timeout=60))
    else:
        local = path or ":memory:"
        store = VectorStore(_open_local(local, wait_seconds), None if local == ":memory:" else local, wait_seconds)
    try:
        yield store
    finally:
        store.client.close()


def _open_local(path: str, wait_seconds: float) -> QdrantClient:
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            return QdrantClient(path=path)
        except RuntimeError as exc:
            if "already accessed" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise VectorStoreBusy(
                    f"Qdrant local storage {path} stayed locked by another process for "
                    f"{wait_seconds:.0f}s (a run still going?); retry later, or use a Qdrant "
                    "server (OPS_QDRANT_URL) for concurrent access"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
