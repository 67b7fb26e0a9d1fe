"""Search a container through its live alias, as a RAG service would: the query embedded by the
live version (fused with BM25 where the version is hybrid), the hits below the generation's least
score dropped (no match rather than a confident-looking far hit), and optionally only the points
whose source fields match."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ops_pipelines.embedders import get_version, load_embedder
from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import Container, Generation, KnowledgeBase
from ops_pipelines.vectors import CollectionNotFound, Hit, VectorStore, alias_name


class NotSynced(OperatorError, RuntimeError):
    pass


@dataclass(frozen=True)
class Searched:
    hits: list[Hit]
    min_score: float | None  # the least score kept, None: every hit
    best_dropped: float | None  # the best score below it, None if none was dropped


def search_container(
    kb: KnowledgeBase, store: VectorStore, slug: str, query: str, limit: int = 5, where: Mapping[str, str] | None = None
) -> list[Hit]:
    return search_live(kb, store, slug, query, limit, where).hits


def search_live(
    kb: KnowledgeBase, store: VectorStore, slug: str, query: str, limit: int = 5, where: Mapping[str, str] | None = None
) -> Searched:
    container = kb.get_container(slug)
    try:
        return _search(kb, store, container, query, limit, where)
    except CollectionNotFound:  # embedded: retention dropped it between reading the live generation and the search
        return _search(kb, store, container, query, limit, where)


def _search(
    kb: KnowledgeBase, store: VectorStore, container: Container, query: str, limit: int, where: Mapping[str, str] | None
) -> Searched:
    # One read gives the collection and the embedder version that made it, so a swap to another
    # dimension can never pair one with the other (embedded, this record is the alias).
    live = kb.live_generation(container.id)
    alias = alias_name(container.slug)
    target = alias if store.keeps_aliases else live.collection if live else None
    served = store.resolve_alias(alias) if store.keeps_aliases else target and store.collection_dimension(target)
    if live is None or not served:
        raise NotSynced(f"container {container.slug!r} has no live collection yet: run sync_job for it first "
                        f"(ops-pipelines sync {container.slug})")
    version = get_version(live.embedder_version)
    vector = load_embedder(version.name).embed_queries([query])[0]
    hits = ranked(store.search(target, vector, limit, text=query if version.hybrid else None, where=where))
    least = min_score_of(live)
    if least is None:
        return Searched(hits, None, None)
    kept = [h for h in hits if h.score >= least]
    dropped = [h.score for h in hits if h.score < least]
    return Searched(kept, least, max(dropped, default=None))


def ranked(hits: list[Hit]) -> list[Hit]:
    """Best first, equal scores in document order: the same chunks rank the same whatever order
    they were written in (an engine breaks ties by its storage order)."""
    return sorted(hits, key=lambda h: (-h.score, str(h.payload.get("source_key", "")), h.payload.get("ordinal", 0)))


def min_score_of(generation: Generation) -> float | None:
    """The least score a search of ``generation`` returns: its version's ``min_score`` if the
    registry sets one, else the one calibrated on the golden set (``quality.calibrate``), else
    None (every hit)."""
    configured = get_version(generation.embedder_version).min_score
    return configured if configured is not None else generation.min_score
