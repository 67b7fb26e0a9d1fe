"""The vector store contract: what every operation of the project asks of Qdrant, whichever way
it runs (``vectors.edge`` embedded, ``vectors.server`` through qdrant-client).

Point ids are deterministic (``point_id``), so every write is idempotent. Collections are named by
generation (``generation_name``); searchers use a container's alias (``alias_name``). A server
keeps that alias itself (``keeps_aliases``); the embedded engine has no aliases, and the
container's live generation recorded in the metadata DB is its alias (``vectors.serving``).
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ops_pipelines.errors import OperatorError

POINT_NAMESPACE = uuid.UUID("6f1c7d2e-4b1a-5c8e-9d0f-0a1b2c3d4e5f")
_UNSAFE = re.compile(r"[^a-z0-9-]+")


class DimensionMismatch(OperatorError, ValueError):
    pass


class CollectionNotFound(LookupError):
    pass


def alias_name(slug: str) -> str:
    """The name searchers use for a container."""
    return f"kb_{slug}"


def generation_name(slug: str, embedder_version: str, generation: int) -> str:
    return f"kb_{slug}__{_UNSAFE.sub('-', embedder_version.lower()).strip('-')}__g{generation}"


def point_uuid(container_id: str, document_id: str, ordinal: int, chunk_hash: str) -> uuid.UUID:
    """Deterministic: the same chunk of the same document always lands on the same point."""
    return uuid.uuid5(POINT_NAMESPACE, f"{container_id}/{document_id}/{ordinal}/{chunk_hash}")


def point_id(container_id: str, document_id: str, ordinal: int, chunk_hash: str) -> str:
    return str(point_uuid(container_id, document_id, ordinal, chunk_hash))


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict


@dataclass(frozen=True)
class StoredPoint:
    """A point as a scroll returns it: the payload keys and the vector only if asked for."""

    id: str
    payload: dict | None
    vector: np.ndarray | None


@dataclass(frozen=True)
class PointPage:
    """A page of a scroll, in id order: ids as an id array (``vectors.ids``), and the payloads
    and vectors (float32, row i = point i) if they were asked for."""

    ids: np.ndarray
    payloads: list[dict] | None
    vectors: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ids)

    def id_strings(self) -> list[str]:
        from ops_pipelines.vectors.ids import id_strings

        return id_strings(self.ids)

    def points(self) -> Iterator[StoredPoint]:
        for i, pid in enumerate(self.id_strings()):
            yield StoredPoint(
                pid,
                self.payloads[i] if self.payloads is not None else None,
                self.vectors[i] if self.vectors is not None else None,
            )


class VectorStore(ABC):
    """One Qdrant, embedded or served. Collections hold cosine vectors of one dimension and
    a JSON payload per point; a hybrid collection also a BM25 sparse vector of each point's
    ``text`` (``vectors.sparse``), which it computes as points are written."""

    keeps_aliases: bool
    description: str
    # Points after whose writing ``build_index`` has a segment to index (the embedded engine indexes
    # a segment at a time, so writers call it as they go); None: the store indexes by itself.
    index_batch: int | None = None
    # A collection can be copied as its files and adopted back (``copy_files``, ``adopt_files``:
    # the embedded engine's shards, index included); a server's collections cannot.
    keeps_files: bool = False

    # ---- collections ------------------------------------------------------------------------

    @abstractmethod
    def collection_names(self) -> list[str]:
        """Every collection in the store, ours or not, sorted."""

    @abstractmethod
    def collection_dimension(self, name: str) -> int | None:
        """The vector size of ``name``, None if there is no such collection."""

    @abstractmethod
    def is_hybrid(self, name: str) -> bool:
        """Whether collection ``name`` keeps BM25 sparse vectors beside the dense ones."""

    @abstractmethod
    def create_collection(self, name: str, dimension: int, hybrid: bool = False) -> None:
        """A new, empty collection; ``name`` must not exist."""

    def ensure_collection(self, name: str, dimension: int, hybrid: bool = False) -> bool:
        """Create ``name`` for ``dimension``-d cosine vectors (and BM25 ones if ``hybrid``); True if
        it was created."""
        existing = self.collection_dimension(name)
        if existing is None:
            self.create_collection(name, dimension, hybrid)
            return True
        if existing != dimension:
            raise DimensionMismatch(f"collection {name} holds {existing}-d vectors, the embedder makes {dimension}-d")
        if self.is_hybrid(name) != hybrid:
            raise DimensionMismatch(
                f"collection {name} {'keeps' if not hybrid else 'lacks'} BM25 vectors, its embedder version "
                f"{'does not' if not hybrid else 'does'}: build the version in a new generation (refresh_job)"
            )
        return False

    @abstractmethod
    def create_field_index(self, name: str, key: str) -> None:
        """A keyword index on payload ``key`` (a path such as ``fields.status``); idempotent."""

    @abstractmethod
    def drop_collection(self, name: str) -> bool:
        """Delete ``name`` if it exists; True if it did."""

    @abstractmethod
    def build_index(self, name: str) -> bool:
        """Index what is not indexed yet, where the store leaves that to us (the embedded engine
        searches unindexed points by brute force); True if anything was built."""

    # ---- points -----------------------------------------------------------------------------

    @abstractmethod
    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict]) -> None:
        """Write the points (row i of ``vectors`` is ``ids[i]``); existing ids are replaced."""

    @abstractmethod
    def delete(self, name: str, ids: Sequence[str]) -> None: ...

    @abstractmethod
    def pages(
        self, name: str, with_payload: bool | list[str] = False, with_vectors: bool = False, page: int = 4096
    ) -> Iterator[PointPage]:
        """Every point of ``name``, a page at a time, in id order."""

    def scroll(
        self, name: str, with_payload: bool | list[str] = False, with_vectors: bool = False, page: int = 4096
    ) -> Iterator[StoredPoint]:
        """Every point of ``name``, one at a time, in id order."""
        for batch in self.pages(name, with_payload, with_vectors, page):
            yield from batch.points()

    def point_ids(self, name: str) -> set[str]:
        return {pid for batch in self.pages(name, page=16384) for pid in batch.id_strings()}

    def id_array(self, name: str) -> np.ndarray:
        """The ids of every point of ``name`` as a sorted id array (``vectors.ids``)."""
        from ops_pipelines.vectors.ids import id_set

        return id_set(batch.ids for batch in self.pages(name, page=16384))

    @abstractmethod
    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        """The points of ``ids`` that exist, with their payloads."""

    @abstractmethod
    def count(self, name: str) -> int: ...

    @abstractmethod
    def search(
        self,
        name: str,
        vector: np.ndarray,
        limit: int = 5,
        exact: bool = False,
        among: Sequence[str] | None = None,
        text: str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[Hit]:
        """The ``limit`` nearest points of collection (or, on a server, alias) ``name``, of the
        points ``among`` only if given, and of those whose payload has each value of ``where``
        (key path -> value); through the index if there is one, by comparing with every point (of
        ``among``) if ``exact``. With ``text``, a hybrid collection fuses the dense ranking with the
        BM25 ranking of ``text`` (scores are then reciprocal-rank sums, ``vectors.sparse``)."""

    # ---- aliases (a server's own; see ``vectors.serving`` for what the embedded engine does) --

    def aliases(self) -> dict[str, str]:
        """Every alias in the store -> the collection it points at."""
        return {}

    def resolve_alias(self, alias: str) -> str | None:
        return self.aliases().get(alias)

    def replace_aliases(self, wanted: dict[str, str], prefix: str) -> None:
        """In one atomic update: remove every alias starting with ``prefix``, then create
        ``wanted`` (alias -> collection)."""
        raise NotImplementedError(f"{self.description} keeps no aliases")

    def point_alias(self, alias: str, collection: str) -> None:
        """Move ``alias`` to ``collection`` in one atomic alias update."""
        raise NotImplementedError(f"{self.description} keeps no aliases")

    def release(self, name: str) -> None:
        """Let go of collection ``name`` until it is next used: what an operation that goes
        through many collections calls as it is done with each, so no more than one is held open
        (and mapped) at a time. Nothing to do on a server."""

    def close(self) -> None:
        """Release what the store holds open."""
