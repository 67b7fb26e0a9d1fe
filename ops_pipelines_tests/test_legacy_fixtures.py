"""What the code before Qdrant Edge left behind stays usable (``fixtures/legacy``, written by
c7308f8 with qdrant-client's local mode): its vector folder migrates into Edge, and its backup
restores and its export imports with Edge as the engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from ops_pipelines.archives import import_archive, read_archive
from ops_pipelines.backup import restore_backup, verify_backup
from ops_pipelines.embedders import load_embedder
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.search import search_container
from ops_pipelines.vectors import EdgeVectorStore, LegacyVectorFolder
from ops_pipelines.vectors import migrate as migration
from ops_pipelines.vectors.migrate import MigrationFailed, migrate_local_mode
from ops_pipelines.vectors.server import QdrantServerStore
from ops_pipelines_tests.conftest import serving_of

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
COLLECTIONS = ["kb_legacy__hash-256-1__g1", "kb_legacy__hash-256-1__g2"]


@pytest.fixture
def legacy(tmp_path) -> Path:
    """A copy of the old DAGSTER_HOME's metadata DB and local-mode vector folder."""
    shutil.copytree(LEGACY / "qdrant", tmp_path / "qdrant")
    shutil.copy(LEGACY / "kb.sqlite", tmp_path / "kb.sqlite")
    return tmp_path


def local_points(folder: Path, name: str) -> dict[str, tuple[dict, np.ndarray]]:
    store = QdrantServerStore(QdrantClient(path=str(folder)), "local mode")
    try:
        return {p.id: (p.payload, p.vector) for p in store.scroll(name, with_payload=True, with_vectors=True)}
    finally:
        store.close()


def test_a_local_mode_folder_is_refused_until_migrated_then_serves_as_before(legacy):
    with pytest.raises(LegacyVectorFolder, match="vectors migrate"):
        EdgeVectorStore(legacy / "qdrant")
    before = {name: local_points(legacy / "qdrant", name) for name in COLLECTIONS}

    report = migrate_local_mode(legacy / "qdrant")
    assert [(c.name, c.dimension, c.points, c.sampled) for c in report.collections] == [
        (name, 256, 4, 4) for name in COLLECTIONS
    ]
    assert report.aliases == {"kb_legacy": COLLECTIONS[1]}
    assert (legacy / "qdrant" / "meta.json").is_file()  # the old files are kept until removed

    kb = KnowledgeBase(f"sqlite:///{legacy / 'kb.sqlite'}")
    store = EdgeVectorStore(legacy / "qdrant")
    try:
        for name in COLLECTIONS:
            after = {p.id: (p.payload, p.vector) for p in store.scroll(name, with_payload=True, with_vectors=True)}
            assert after.keys() == before[name].keys()
            for pid, (payload, vector) in after.items():
                assert payload == before[name][pid][0] and np.allclose(vector, before[name][pid][1], atol=1e-6)
        assert serving_of(kb, store, "legacy") == COLLECTIONS[1]  # the DB's live generation, as the old alias
        hits = search_container(kb, store, "legacy", "glaciers and ice", 4)
        assert hits[0].payload["source_key"] == "gamma.md"
    finally:
        store.close()
        kb.close()


def test_a_migration_that_dies_changes_nothing_and_runs_again(legacy, monkeypatch):
    calls = []
    original = EdgeVectorStore.upsert

    def dies_on_the_second(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed mid-migration")
        return original(self, *args)

    monkeypatch.setattr(EdgeVectorStore, "upsert", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        migrate_local_mode(legacy / "qdrant")
    with pytest.raises(LegacyVectorFolder):  # half a copy is never used
        EdgeVectorStore(legacy / "qdrant")
    monkeypatch.setattr(EdgeVectorStore, "upsert", original)
    report = migrate_local_mode(legacy / "qdrant", remove_old=True)
    assert report.removed_old and [c.points for c in report.collections] == [4, 4]
    assert not (legacy / "qdrant" / "meta.json").exists() and not (legacy / "qdrant" / "collection").exists()
    store = EdgeVectorStore(legacy / "qdrant")
    try:
        assert store.collection_names() == COLLECTIONS and [store.count(n) for n in COLLECTIONS] == [4, 4]
    finally:
        store.close()


def test_a_copy_that_differs_is_not_committed(legacy, monkeypatch):
    monkeypatch.setattr(migration, "SAMPLE", 4)
    original = EdgeVectorStore.retrieve

    def tampered(self, name, ids, with_vectors=False):
        points = original(self, name, ids, with_vectors)
        return [type(p)(p.id, {**p.payload, "text": "changed"}, p.vector) for p in points]

    monkeypatch.setattr(EdgeVectorStore, "retrieve", tampered)
    with pytest.raises(MigrationFailed, match="differs after the copy"):
        migrate_local_mode(legacy / "qdrant")
    with pytest.raises(LegacyVectorFolder):
        EdgeVectorStore(legacy / "qdrant")


def test_nothing_to_migrate_is_said_plainly(tmp_path):
    with pytest.raises(MigrationFailed, match="nothing to migrate"):
        migrate_local_mode(tmp_path)


def test_a_backup_written_before_qdrant_edge_restores(tmp_path):
    kb = KnowledgeBase(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    objects = FolderObjectStore(tmp_path / "objects")
    store = EdgeVectorStore(tmp_path / "qdrant")
    try:
        verified = verify_backup(LEGACY / "backup.tar", tmp_path / "extract", objects)
        report = restore_backup(kb, store, objects, verified)
        assert all(c.passed for c in report.checks["legacy"])
        container = kb.get_container("legacy")
        assert [(g.number, g.state) for g in kb.generations(container.id)] == [(1, "retired"), (2, "live")]
        assert serving_of(kb, store, "legacy") == COLLECTIONS[1]
        assert search_container(kb, store, "legacy", "glaciers and ice", 4)[0].payload["source_key"] == "gamma.md"
    finally:
        store.close()
        kb.close()


def test_an_export_written_before_qdrant_edge_imports(tmp_path):
    kb = KnowledgeBase(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    objects = FolderObjectStore(tmp_path / "objects")
    store = EdgeVectorStore(tmp_path / "qdrant")
    try:
        verified = read_archive(LEGACY / "export.tar", tmp_path / "extract")
        report = import_archive(kb, objects, store, verified, load_embedder)
        assert (report.documents, report.chunks, report.vectors_from_archive) == (4, 4, True)
        assert all(c.passed for c in report.checks)
        assert search_container(kb, store, "legacy", "apples in autumn", 4)[0].payload["source_key"] == "alpha.md"
    finally:
        store.close()
        kb.close()
