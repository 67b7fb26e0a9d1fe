"""A Qdrant server through qdrant-client: real collections and aliases, moved atomically.

The same class drives qdrant-client's local mode (a pure-Python stand-in for the server API,
``QdrantClient(path=...)`` or ``":memory:"``): the contract tests run it as the server, since no
Qdrant server runs here, and ``vectors migrate`` reads folders that local mode wrote.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from qdrant_client import QdrantClient, models

from ops_pipelines.vectors.base import CollectionNotFound, Hit, PointPage, StoredPoint, VectorStore
from ops_pipelines.vectors.ids import id_bytes
from ops_pipelines.vectors.sparse import RRF_K, SPARSE, document_terms, prefetch_limit, query_terms

_WRITE_BATCH = 256


class QdrantServerStore(VectorStore):
    keeps_aliases = True

    def __init__(self, client: QdrantClient, description: str):
        self.client = client
        self.description = description
        self._hybrid: dict[str, bool] = {}  # collection -> is_hybrid: fixed for its life, asked at every write

    @classmethod
    def connect(cls, url: str, api_key: str | None = None) -> QdrantServerStore:
        return cls(QdrantClient(url=url, api_key=api_key, timeout=60), f"Qdrant at {url}")

    # ---- collections ------------------------------------------------------------------------

    def collection_names(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def collection_dimension(self, name: str) -> int | None:
        if not self.client.collection_exists(name):
            return None
        return self.client.get_collection(name).config.params.vectors.size

    def is_hybrid(self, name: str) -> bool:
        if name not in self._hybrid:
            if not self.client.collection_exists(name):
                raise CollectionNotFound(f"collection {name} does not exist in {self.description}")
            self._hybrid[name] = SPARSE in (self.client.get_collection(name).config.params.sparse_vectors or {})
        return self._hybrid[name]

    def create_collection(self, name: str, dimension: int, hybrid: bool = False) -> None:
        self._hybrid.pop(name, None)
        self.client.create_collection(
            name,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)} if hybrid else None,
            on_disk_payload=True,
        )

    def create_field_index(self, name: str, key: str) -> None:
        with warnings.catch_warnings():  # local mode (the tests' server) says it keeps no payload index
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            self.client.create_payload_index(name, key, models.PayloadSchemaType.KEYWORD, wait=True)

    def drop_collection(self, name: str) -> bool:
        self._hybrid.pop(name, None)
        if not self.client.collection_exists(name):
            return False
        self.client.delete_collection(name)
        return True

    def build_index(self, name: str) -> bool:
        return False  # a server's optimizers index in the background

    # ---- points -----------------------------------------------------------------------------

    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict]) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        hybrid = self.is_hybrid(name)
        for start in range(0, len(ids), _WRITE_BATCH):
            end = start + _WRITE_BATCH
            dense = vectors[start:end].tolist()
            batch = payloads[start:end]
            written = (
                {"": dense, SPARSE: [_sparse(document_terms(p.get("text", ""))) for p in batch]}
                if hybrid else dense
            )
            self.client.upsert(name, points=models.Batch(ids=list(ids[start:end]), vectors=written, payloads=list(batch)), wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), 1024):
            self.client.delete(name, points_selector=models.PointIdsList(points=list(ids[start : start + 1024])), wait=True)

    def pages(
        self, name: str, with_payload: bool | list[str] = False, with_vectors: bool = False, page: int = 4096
    ) -> Iterator[PointPage]:
        offset = None
        while True:
            points, offset = self.client.scroll(
                name, limit=page, offset=offset, with_payload=with_payload, with_vectors=with_vectors
            )
            yield PointPage(
                id_bytes([str(p.id) for p in points]),
                [p.payload or {} for p in points] if with_payload else None,
                np.array([_dense(p.vector) for p in points], dtype=np.float32) if with_vectors else None,
            )
            if offset is None:
                return

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        records = self.client.retrieve(name, list(ids), with_payload=True, with_vectors=with_vectors)
        return [_stored(r, with_vectors) for r in records]

    def count(self, name: str) -> int:
        return self.client.count(name, exact=True).count

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
        dense = np.asarray(vector, dtype=np.float32).tolist()
        params = models.SearchParams(exact=True) if exact else None
        found_by = _filter(among, where)
        if text is not None and self.is_hybrid(self.resolve_alias(name) or name):
            fetched = prefetch_limit(limit)
            response = self.client.query_points(
                name,
                prefetch=[
                    models.Prefetch(query=dense, limit=fetched, params=params, filter=found_by),
                    models.Prefetch(
                        query=_sparse(query_terms(text)), using=SPARSE, limit=fetched, filter=found_by
                    ),
                ],
                query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
                limit=limit,
                with_payload=True,
            )
        else:
            response = self.client.query_points(
                name, query=dense, limit=limit, with_payload=True, search_params=params, query_filter=found_by
            )
        return [Hit(str(p.id), p.score, p.payload or {}) for p in response.points]

    # ---- aliases ----------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def point_alias(self, alias: str, collection: str) -> None:
        ops: list = []
        if self.resolve_alias(alias) is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
        self.client.update_collection_aliases(change_aliases_operations=ops)

    def replace_aliases(self, wanted: dict[str, str], prefix: str) -> None:
        ops: list = [
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            for alias in self.aliases()
            if alias.startswith(prefix)
        ]
        ops += [
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
            for alias, collection in sorted(wanted.items())
        ]
        if ops:
            self.client.update_collection_aliases(change_aliases_operations=ops)

    def close(self) -> None:
        self.client.close()


def _filter(among: Sequence[str] | None, where: Mapping[str, str] | None) -> models.Filter | None:
    must: list = [models.HasIdCondition(has_id=list(among))] if among is not None else []
    must += [models.FieldCondition(key=key, match=models.MatchValue(value=value)) for key, value in (where or {}).items()]
    return models.Filter(must=must) if must else None


def _sparse(terms: tuple[list[int], list[float]]) -> models.SparseVector:
    return models.SparseVector(indices=terms[0], values=terms[1])


def _dense(vector) -> list[float]:
    """The dense vector of a point (a hybrid collection's points have named vectors)."""
    return vector[""] if isinstance(vector, dict) else vector


def _stored(record, with_vectors: bool) -> StoredPoint:
    vector = np.asarray(_dense(record.vector), dtype=np.float32) if with_vectors else None
    return StoredPoint(str(record.id), record.payload, vector)
