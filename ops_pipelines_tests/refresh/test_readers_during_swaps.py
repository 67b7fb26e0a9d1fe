"""Readers never see a half-swapped alias: while another process flips a container's live
generation back and forth between two embedder versions of different dimensions, every search of
this process gets one generation's collection with the query embedded by that same version."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from ops_pipelines.embedders import load_embedder
from ops_pipelines.ingest import chunk_documents, embed_chunks, sync_collection, sync_documents
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.refresh import build_generation, swap_to
from ops_pipelines.search import search_container
from ops_pipelines.sources import open_source
from ops_pipelines.vectors import EdgeVectorStore

SWAPS = 60

_SWAPPER = textwrap.dedent(
    """
    import sys
    from ops_pipelines.kb import KnowledgeBase
    from ops_pipelines.refresh import rollback
    from ops_pipelines.vectors import EdgeVectorStore
    kb, store = KnowledgeBase(sys.argv[1]), EdgeVectorStore(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(sys.argv[3])):
        rollback(kb, store, kb.get_container("docs"))
    store.close()
    kb.close()
    """
)


def test_searches_during_swaps_across_dimensions_never_fail(sqlite_url, tmp_path, corpus, extra_embedders):
    kb, store = KnowledgeBase(sqlite_url), EdgeVectorStore(tmp_path / "qdrant")
    container = kb.add_container("docs", "folder", str(corpus), "hash-256@1")
    sync_documents(kb, FolderObjectStore(tmp_path / "objects"), container, open_source("folder", str(corpus)))
    chunk_documents(kb, container)
    embed_chunks(kb, container, load_embedder, "hash-256@1")
    sync_collection(kb, store, container)
    embed_chunks(kb, container, load_embedder, "hash-64@1")
    swap_to(kb, store, container, build_generation(kb, store, container, "hash-64@1").generation, retention=None)

    swapper = subprocess.Popen(
        [sys.executable, "-c", _SWAPPER, sqlite_url, str(tmp_path / "qdrant"), str(SWAPS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    searches, dimensions = 0, set()
    try:
        assert swapper.stdout.readline().strip() == "ready"
        swapper.stdin.write("go\n")
        swapper.stdin.flush()
        while swapper.poll() is None:
            hits = search_container(kb, store, "docs", "glaciers and ice", 5)  # raises on a mismatch
            assert hits and hits[0].payload["source_key"] == "gamma.md"
            searches += 1
            dimensions.add(kb.get_container("docs").embedder_version)
    finally:
        swapper.wait(120)
        store.close()
        kb.close()
    assert swapper.returncode == 0
    assert searches >= 10 and dimensions == {"hash-256@1", "hash-64@1"}  # searched across both
