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
    expected = expected_hashes(kb, container)
    snap = CollectionSnapshot.read(store, generation.collection)
    return content_checks(expected, snap, generation.embedder_version) + [
        retrieval_check(kb, store, generation, expected, sample_size)
    ]


def expected_hashes(kb: KnowledgeBase, container: Container) -> dict[str, str]:
    """Point id -> chunk hash of every active chunk: what a live generation must hold."""
    return {pid: row.content_hash for pid, row in expected_points(kb, container).items()}


def content_checks(expected: dict[str, str], snap: CollectionSnapshot, embedder_version: str) -> list[CheckResult]:
    """The checks that are a function of the points alone; a restore runs them on a backup's
    points before it writes them."""
    return [
        reconcile.point_count(expected, snap),
        reconcile.point_ids(expected, snap),
        reconcile.vector_dimension(get_version(embedder_version).dimension, snap),
        reconcile.vector_values(snap),
        reconcile.payload_hashes(expected, snap),
    ]


def retrieval_check(
    kb: KnowledgeBase, store: VectorStore, generation: Generation, expected: dict[str, str], sample_size: int = 20
) -> CheckResult:
    """Searches of the collection itself: a sample of chunks must retrieve themselves."""
    version = generation.embedder_version
    if store.collection_dimension(generation.collection) != get_version(version).dimension:
        # A query of the embedder's size cannot run against this collection at all.
        return CheckResult("self_retrieval", False, "not run: the collection has the wrong dimension")

    def top_hit(vector) -> str | None:
        hits = store.search(generation.collection, vector, limit=1)
        return hits[0].id if hits else None

    def cached_vector(chunk_hash: str):
        return kb.get_embeddings(version, [chunk_hash]).get(chunk_hash)

    return reconcile.self_retrieval(expected, top_hit, cached_vector, sample_size=sample_size)
