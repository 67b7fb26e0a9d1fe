"""The swap gate: every reconciliation check of ``vectors.reconcile`` on one generation."""

from __future__ import annotations

from ops_pipelines.embedders import get_version
from ops_pipelines.ingest import expected_points
from ops_pipelines.kb import Container, Generation, GenerationNotFound, KnowledgeBase
from ops_pipelines.vectors import VectorStore, reconcile
from ops_pipelines.vectors.reconcile import CheckResult, CollectionSnapshot

CHECKS = {
    "point_count": "The generation holds one point per active chunk of the container.",
    "point_ids": "No point is missing and none is extra (deterministic ids from document, ordinal, chunk hash).",
    "vector_dimension": "The collection's vector size is the embedder version's dimension.",
    "vector_values": "No vector has NaN/infinite components or a zero norm.",
    "payload_hashes": "Each point's payload chunk_hash is the content hash of its chunk.",
    "self_retrieval": "A sample of chunks, queried with their own cached vectors, come back at rank 1.",
}


def reconcile_generation(
    kb: KnowledgeBase, store: VectorStore, container: Container, generation: Generation, sample_size: int = 20
) -> list[CheckResult]:
    if store.collection_dimension(generation.collection) is None:
        raise GenerationNotFound(
            f"generation {generation.number} of {container.slug!r}: collection {generation.collection} "
            "does not exist in Qdrant; materialize shadow_collection again to rebuild it"
        )
    expected = {pid: row.content_hash for pid, row in expected_points(kb, container).items()}
    snap = CollectionSnapshot.read(store, generation.collection)
    version = generation.embedder_version

    def top_hit(vector) -> str | None:
        hits = store.search(generation.collection, vector, limit=1)
        return hits[0].id if hits else None

    def cached_vector(chunk_hash: str):
        return kb.get_embeddings(version, [chunk_hash]).get(chunk_hash)

    dimension = get_version(version).dimension
    results = [
        reconcile.point_count(expected, snap),
        reconcile.point_ids(expected, snap),
        reconcile.vector_dimension(dimension, snap),
        reconcile.vector_values(snap),
        reconcile.payload_hashes(expected, snap),
    ]
    if snap.dimension != dimension:
        # A query of the embedder's size cannot run against this collection at all.
        results.append(CheckResult("self_retrieval", False, "not run: the collection has the wrong dimension"))
    else:
        results.append(reconcile.self_retrieval(expected, top_hit, cached_vector, sample_size=sample_size))
    return results
