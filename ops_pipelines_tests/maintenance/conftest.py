"""A container synced for real (Dagster sync assets, Qdrant local mode, a folder object store), and
refreshes through the refresh core, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ops_pipelines.embedders import load_embedder
from ops_pipelines.ingest import embed_chunks
from ops_pipelines.kb import Generation
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.refresh import build_generation, swap_to


@pytest.fixture
def synced(harness, corpus):
    """Container ``docs`` synced from the five-document corpus under hash-256@1."""
    harness.add_container("docs", corpus)
    harness.sync("docs")
    return harness


@pytest.fixture
def kb_of(synced):
    kb = synced.kb()
    yield kb
    kb.close()


def objects_of(harness) -> FolderObjectStore:
    return FolderObjectStore(harness.home / "objects")


def refresh(harness, slug: str, version: str) -> Generation:
    """What refresh_job does: embed, build a shadow generation, put it live (no retention)."""
    kb = harness.kb()
    try:
        container = kb.get_container(slug)
        embed_chunks(kb, container, load_embedder, version)
        with harness.vector_store() as store:
            generation = build_generation(kb, store, container, version).generation
            swap_to(kb, store, container, generation, retention=None)
        return kb.generation(container.id, generation.number)
    finally:
        kb.close()
