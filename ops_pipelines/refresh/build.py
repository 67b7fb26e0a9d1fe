"""Build a collection generation for an embedder version: a shadow beside the live one, or the
live one rewritten in place.

Vectors come from the embedding cache only (the embeddings step fills it first), so a rebuild
under a version whose vectors are cached costs Qdrant writes and no model time. A shadow build
that dies is resumed by the next run: the ``building`` generation is reopened and reconciled by
point id, so nothing is duplicated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ops_pipelines.embedders import get_version
from ops_pipelines.embedders.registry import EmbedderVersion
from ops_pipelines.errors import OperatorError
from ops_pipelines.ingest import MissingEmbeddings, fill_collection
from ops_pipelines.kb import Container, Generation, KnowledgeBase
from ops_pipelines.vectors import VectorStore, generation_name

_log = logging.getLogger(__name__)

SHADOW, IN_PLACE = "shadow", "in_place"


class NoChunks(OperatorError, RuntimeError):
    pass


class RefreshRefused(OperatorError, ValueError):
    pass


@dataclass(frozen=True)
class BuildReport:
    mode: str
    generation: Generation
    resumed: bool
    upserted: int
    deleted: int
    points: int
    index_seconds: float | None = None  # the HNSW build, None when nothing needed indexing


def require_chunks(kb: KnowledgeBase, container: Container, chunker: str) -> int:
    """The number of active chunks ``chunker`` cut; ``NoChunks`` if there are none."""
    active = kb.count_active_chunks(container.id, chunker)
    if not active and next(kb.documents_to_chunk(container.id, chunker, 1), None):  # documents it has not cut
        raise NoChunks(
            f"container {container.slug!r} has no chunks cut by {chunker} yet: run the whole refresh_job "
            "(its version_embeddings step cuts them), not shadow_collection alone"
        )
    if not active:
        raise NoChunks(
            f"container {container.slug!r} has no active chunks, so there is nothing to build: run "
            f"sync_job for it first (ops-pipelines sync {container.slug}), or check that its source has documents"
        )
    return active


def build_generation(
    kb: KnowledgeBase,
    store: VectorStore,
    container: Container,
    embedder_version: str,
    mode: str = SHADOW,
    log: logging.Logger = _log,
    embedded_just_before: bool = False,
) -> BuildReport:
    """Fill a generation from the embedding cache. ``embedded_just_before``: the caller embedded
    every active chunk under this version first (refresh_job's embeddings step, in the same run),
    so a chunk that has no vector now was changed since by a sync, and the error says so."""
    version = get_version(embedder_version)
    require_chunks(kb, container, version.chunker)
    if mode == SHADOW:
        generation, created = kb.open_generation(
            container.id, version.name, lambda n: generation_name(container.slug, version.name, n)
        )
        resumed = not created
        _ensure_shadow_collection(store, generation, version, log)
        log.info(
            "%s shadow generation %d (%s) for %s",
            "resuming" if resumed else "building", generation.number, generation.collection, version.name,
        )
    elif mode == IN_PLACE:
        generation, resumed = _retarget_live(kb, store, container, version), False
        log.info("rewriting live generation %d (%s) in place with %s", generation.number, generation.collection, version.name)
    else:
        raise RefreshRefused(f"unknown refresh mode {mode!r}: use {SHADOW!r} or {IN_PLACE!r}")
    # A resumed shadow may hold what a failed run left: its points are verified, not trusted.
    try:
        filled = fill_collection(
            kb, store, container, generation.collection, version.name,
            overwrite=mode == IN_PLACE, verify=resumed, log=log,
        )
    except MissingEmbeddings as exc:
        raise _unembedded(container, version.name, mode, generation, exc.missing, embedded_just_before) from exc
    return BuildReport(
        mode, generation, resumed, filled.upserted, filled.deleted, store.count(generation.collection),
        filled.index_seconds,
    )


def _unembedded(
    container: Container, version: str, mode: str, generation: Generation, missing: int, embedded_just_before: bool
) -> MissingEmbeddings:
    again = f"ops-pipelines refresh {container.slug} --embedder-version {version}" + (
        f" --mode {IN_PLACE}" if mode == IN_PLACE else ""
    )
    if not embedded_just_before:
        return MissingEmbeddings(
            f"{missing} chunk(s) of {container.slug!r} have no {version} vector in the embedding cache: run the "
            f"whole refresh ({again}), whose embeddings step embeds them first",
            missing,
        )
    state = "nothing was swapped" if mode == SHADOW else f"live generation {generation.number} is partly rewritten"
    return MissingEmbeddings(
        f"a sync changed {missing} chunk(s) of {container.slug!r} while this refresh ran, after it had "
        f"embedded the chunks under {version}, so generation {generation.number} cannot be completed and "
        f"{state}. Run the refresh again ({again}): it embeds only the changed chunks and finishes "
        f"generation {generation.number}",
        missing,
    )


def _ensure_shadow_collection(store: VectorStore, generation: Generation, version: EmbedderVersion, log) -> None:
    """Create the shadow's collection; one left with the wrong vector size (or BM25 vectors where
    the version has none, or none where it has) by an earlier run is never served (the generation
    is still building), so it is dropped and built again."""
    existing = store.collection_dimension(generation.collection)
    if existing is not None and (existing, store.is_hybrid(generation.collection)) != (version.dimension, version.hybrid):
        log.warning(
            "%s holds %d-d vectors%s, %s makes %d-d%s: dropping the unserved shadow and building it again",
            generation.collection, existing, " with BM25" if store.is_hybrid(generation.collection) else "",
            version.name, version.dimension, " with BM25" if version.hybrid else "",
        )
        store.drop_collection(generation.collection)
    store.ensure_collection(generation.collection, version.dimension, version.hybrid)


def check_in_place(kb: KnowledgeBase, store: VectorStore, container: Container, embedder_version: str) -> Generation:
    """The live generation an in_place refresh under ``embedder_version`` would rewrite, or
    ``RefreshRefused`` when there is none or its collection holds vectors of another dimension.
    It costs no model time: a refresh runs it before its embeddings step, and again before writing."""
    version = get_version(embedder_version)
    live = kb.live_generation(container.id)
    if live is None:
        raise RefreshRefused(
            f"container {container.slug!r} has no live collection to refresh in place: run sync_job "
            f"for it first (ops-pipelines sync {container.slug}), or use --mode shadow / mode: shadow"
        )
    existing = store.collection_dimension(live.collection)
    if existing is not None and existing != version.dimension:
        raise RefreshRefused(
            f"an in_place refresh of {container.slug!r} cannot write {version.name}'s {version.dimension}-d "
            f"vectors into its {existing}-d live collection {live.collection}: use --mode shadow / mode: shadow, "
            "which builds a new generation beside it and swaps the alias only after the checks pass. Nothing "
            "was embedded or written"
        )
    if existing is not None and store.is_hybrid(live.collection) != version.hybrid:
        raise RefreshRefused(
            f"an in_place refresh of {container.slug!r} cannot {'add' if version.hybrid else 'drop'} BM25 vectors "
            f"{'to' if version.hybrid else 'from'} its live collection {live.collection} ({version.name} "
            f"{'has' if version.hybrid else 'has none'}): use --mode shadow / mode: shadow, which builds a new "
            "generation beside it and swaps the alias only after the checks pass. Nothing was embedded or written"
        )
    return live


def _retarget_live(kb: KnowledgeBase, store: VectorStore, container: Container, version: EmbedderVersion) -> Generation:
    live = check_in_place(kb, store, container, version.name)
    store.ensure_collection(live.collection, version.dimension, version.hybrid)
    if live.embedder_version != version.name:
        # From the first rewritten point on, the live collection holds this version's vectors.
        kb.retarget_live_generation(container.id, version.name)
    return kb.generation(container.id, live.number)
