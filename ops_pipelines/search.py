"""Search a container through its live alias, as a RAG service would."""

from __future__ import annotations

from ops_pipelines.embedders import load_embedder
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.vectors import Hit, VectorStore, alias_name


class NotSynced(RuntimeError):
    pass


def search_container(kb: KnowledgeBase, store: VectorStore, slug: str, query: str, limit: int = 5) -> list[Hit]:
    container = kb.get_container(slug)
    alias = alias_name(container.slug)
    if store.resolve_alias(alias) is None:
        raise NotSynced(f"container {container.slug!r} has no live collection yet: run sync_job for it first")
    vector = load_embedder(container.embedder_version).embed([query])[0]
    return store.search(alias, vector, limit)
