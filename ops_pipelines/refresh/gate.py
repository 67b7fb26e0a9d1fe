"""The swap gate: every reconciliation check of ``vectors.reconcile`` on one generation, and
its retrieval quality (``quality.gate``)."""

from __future__ import annotations

from ops_pipelines.embedders import get_version
from ops_pipelines.ingest import ExpectedPoints, expected_points
from ops_pipelines.kb import Container, Generation, GenerationNotFound, KnowledgeBase
from ops_pipelines.quality.gate import DESCRIPTION as QUALITY_DESCRIPTION
from ops_pipelines.quality.gate import RETRIEVAL_QUALITY, retrieval_quality
from ops_pipelines.refresh.build import RefreshRefused
from ops_pipelines.vectors import VectorStore, alias_name, reconcile
from ops_pipelines.vectors.reconcile import ID_FIELDS, CheckResult, ContentScan

CHECKS = {
    "point_count": "The generation holds one point per active chunk of the container.",
    "point_ids": "No point is missing and none is extra (deterministic ids from document, ordinal, chunk hash).",
    "vector_dimension": "The collection's vector size is the embedder version's dimension.",
    "vector_values": "No vector has NaN/infinite components or a zero norm.",
    "payload_hashes": "Each point's payload chunk_hash is the content hash of its chunk.",
    "self_retrieval": "A sample of chunks, queried with their own cached vectors among the sampled points, come back at rank 1.",
}
# ...and before a swap, whether it answers as well as the live generation (``quality.gate``)
SWAP_CHECKS = {**CHECKS, RETRIEVAL_QUALITY: QUALITY_DESCRIPTION}


def reconcile_generation(kb: KnowledgeBase, store: VectorStore, container: Container, generation: Generation) -> list[CheckResult]:
    dimension = store.collection_dimension(generation.collection)
    if dimension is None:
        raise GenerationNotFound(
            f"generation {generation.number} of {container.slug!r}: collection {generation.collection} "
            "does not exist in Qdrant; materialize shadow_collection again to rebuild it"
        )
    expected = expected_points(kb, container, get_version(generation.embedder_version).chunker)
    scan = content_scan(expected, generation.embedder_version, dimension)
    scan.add_pages(store.pages(generation.collection, with_payload=ID_FIELDS, with_vectors=True, page=1024))
    return scan.results() + [retrieval_check(kb, store, generation, expected)]


def gate_generation(kb: KnowledgeBase, store: VectorStore, container: Container, generation: Generation) -> list[CheckResult]:
    """Every check of the swap gate: the reconciliation checks, then retrieval quality (which
    cannot search a collection of the wrong dimension)."""
    results = reconcile_generation(kb, store, container, generation)
    if next(r for r in results if r.name == "vector_dimension").passed:
        results.append(retrieval_quality(kb, store, container, generation))
    else:
        results.append(CheckResult(RETRIEVAL_QUALITY, False, "not measured: the collection has the wrong dimension"))
    return results


def refuse_failed_checks(container: Container, generation: Generation, results: list[CheckResult]) -> None:
    """Refuse the swap if a check failed, naming each failure and what to do."""
    failed = [r for r in results if not r.passed]
    if failed:
        raise RefreshRefused(
            f"not swapping {alias_name(container.slug)} to {generation.collection}: "
            + "; ".join(f"{r.name}: {r.summary}" for r in failed)
            + ". The live alias is untouched. Fix the cause, then run the refresh again (ops-pipelines refresh "
            f"{container.slug} --embedder-version {generation.embedder_version}): it resumes generation "
            f"{generation.number}, rewrites what is wrong and checks it again"
        )


def content_scan(expected: ExpectedPoints, embedder_version: str, collection_dimension: int | None) -> ContentScan:
    """The checks that are a function of the points alone, to be fed the points; a restore feeds
    them a backup's points as it writes them."""
    return ContentScan(expected.container_id, expected.ids, get_version(embedder_version).dimension, collection_dimension)


def retrieval_check(kb: KnowledgeBase, store: VectorStore, generation: Generation, expected: ExpectedPoints) -> CheckResult:
    """Searches of the collection itself: a sample of chunks must retrieve themselves."""
    version = generation.embedder_version
    if store.collection_dimension(generation.collection) != get_version(version).dimension:
        # A query of the embedder's size cannot run against this collection at all.
        return CheckResult("self_retrieval", False, "not run: the collection has the wrong dimension")

    # Exactly, among the sampled points: it checks the points (a stored vector is its chunk's cached
    # one, nearer to it than to the other samples), not the index, and costs as many comparisons as
    # there are samples, where comparing with every point reads the whole collection each time.
    sampled = [pid for pid, _ in expected.sample]

    def top_hit(vector):
        hits = store.search(generation.collection, vector, limit=1, exact=True, among=sampled)
        return hits[0] if hits else None

    def cached_vector(chunk_hash: str):
        return kb.get_embeddings(version, [chunk_hash], generation.container_id).get(chunk_hash)

    return reconcile.self_retrieval(expected.sample, top_hit, cached_vector)
