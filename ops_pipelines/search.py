"""Search a container through its live alias, as a RAG service would."""

from __future__ import annotations

from ops_pipelines.embedders import load_embedder
from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import Container, KnowledgeBase
from ops_pipelines.vectors import CollectionNotFound, Hit, VectorStore, alias_name


class NotSynced(OperatorError, RuntimeError):
    pass


def search_container(kb: KnowledgeBase, store: VectorStore, slug: str, query: str, limit: int = 5) -> list[Hit]:
    container = kb.get_container(slug)
    try:
        return _search(kb, store, container, query, limit)
    except CollectionNotFound:  # embedded: retention dropped it between reading the live generation and the search
        return _search(kb, store, container, query, limit)


def _search(kb: KnowledgeBase, store: VectorStore, container: Container, query: str, limit: int) -> list[Hit]:
    # One read gives the collection and the embedder version that made it, so a swap to another
    # dimension can never pair one with the other (embedded, this record is the alias).
    live = kb.live_generation(container.id)
    alias = alias_name(container.slug)
    target = alias if store.keeps_aliases else live.collection if live else None
    served = store.resolve_alias(alias) if store.keeps_aliases else target and store.collection_dimension(target)
    if live is None or not served:
        raise NotSynced(f"container {container.slug!r} has no live collection yet: run sync_job for it first "
                        f"(ops-pipelines sync {container.slug})")
    vector = load_embedder(live.embedder_version).embed_queries([query])[0]
    return ranked(store.search(target, vector, limit))


def ranked(hits: list[Hit]) -> list[Hit]:
    """Best first, equal scores in document order: the same chunks rank the same whatever order
    they were written in (an engine breaks ties by its storage order)."""
    return sorted(hits, key=lambda h: (-h.score, str(h.payload.get("source_key", "")), h.payload.get("ordinal", 0)))
