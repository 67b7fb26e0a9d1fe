"""Backup and restore of the whole knowledge base: round trip on SQLite and PostgreSQL, dry run,
refusals, hostile archives and a restore that dies half way."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from ops_pipelines.archives import ArchiveError, ChecksumMismatch, UnsafeMember, read_archive
from ops_pipelines.backup import (
    BACKUP_ARCHIVE,
    RestoreRefused,
    plan_restore,
    restore_backup,
    verify_backup,
    write_backup,
)
from ops_pipelines.backup import database as backup_database
from ops_pipelines.backup.format import DATABASE
from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.embedders import load_embedder
from ops_pipelines.ingest import chunk_documents, embed_chunks, sync_collection, sync_documents
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.refresh import build_generation, swap_to
from ops_pipelines.search import search_container
from ops_pipelines.sources import open_source
from ops_pipelines.vectors import EdgeVectorStore
from ops_pipelines_tests.conftest import backend_store, serving_of, spy_field_indexes

QUERIES = ("glaciers and ice", "apples in autumn", "bicycle gears")


@dataclass
class World:
    kb: KnowledgeBase
    objects: FolderObjectStore
    store: object
    tmp: Path

    def top(self, slug: str, query: str) -> list[tuple[float, str]]:
        """Every hit, ties in score ordered by key (the order of equal scores is Qdrant's)."""
        hits = search_container(self.kb, self.store, slug, query, 10)  # every chunk: no tie at the cut
        return sorted((-round(h.score, 5), h.payload["source_key"]) for h in hits)

    def state(self) -> dict:
        """What a restore must bring back: containers, generations, counts, aliases, search results."""
        out = {}
        for c in self.kb.list_containers():
            out[c.slug] = {
                "id": c.id,
                "embedder": c.embedder_version,
                "generations": [(g.number, g.state, g.embedder_version) for g in self.kb.generations(c.id)],
                "documents": self.kb.count_documents(c.id),
                "chunks": self.kb.count_active_chunks(c.id, PARA),
                "points": self.store.count(serving_of(self.kb, self.store, c.slug)),
                "top": [self.top(c.slug, q) for q in QUERIES],
            }
        return out

    def collections(self) -> set[str]:
        return set(self.store.collection_names())

    def backup(self, name: str = "kb.tar", **kwargs) -> Path:
        path = self.tmp / name
        write_backup(self.kb, self.store, self.objects, path, run_id="run-1", **kwargs)
        return path

    def verified(self, path: Path):
        dest = self.tmp / f"extract-{len(list(self.tmp.iterdir()))}"
        return read_archive(path, dest, spec=BACKUP_ARCHIVE)

    def restore(self, path: Path, **kwargs):
        return self.restore_verified(self.verified(path), **kwargs)

    def restore_verified(self, verified, **kwargs):
        return restore_backup(self.kb, self.store, self.objects, verified, **kwargs)

    def wipe(self) -> None:
        for c in self.kb.list_containers():
            for g in self.kb.generations(c.id):
                self.store.drop_collection(g.collection)
            self.kb.delete_container(c.id)
        shutil.rmtree(self.objects.root)


def _sync(kb, objects, store, slug, source, version="hash-256@1"):
    container = kb.add_container(slug, "folder", str(source), version)
    sync_documents(kb, objects, container, open_source("folder", str(source)))
    chunk_documents(kb, container)
    embed_chunks(kb, container, load_embedder, version)
    sync_collection(kb, store, container)
    return container


@pytest.fixture
def world(request, kb_url, tmp_path, corpus, extra_embedders):
    """Two containers; ``docs`` was refreshed to hash-64@1, so it has a live and a retained generation.
    On Qdrant Edge (its backups hold shards' files) unless parametrized ``server`` (points)."""
    kb = KnowledgeBase(kb_url)
    objects = FolderObjectStore(tmp_path / "objects")
    other = tmp_path / "other"
    other.mkdir()
    (other / "zeta.md").write_text("# Zeta\n\nZeta is about zebras\tcrossing the savanna \\ the plains.\r\n")
    with backend_store(getattr(request, "param", "edge"), tmp_path / "qdrant") as store:
        docs = _sync(kb, objects, store, "docs", corpus)
        _sync(kb, objects, store, "other", other)
        embed_chunks(kb, docs, load_embedder, "hash-64@1")
        built = build_generation(kb, store, docs, "hash-64@1")
        swap_to(kb, store, docs, built.generation, retention=None)
        work = tmp_path / "work"
        work.mkdir()
        yield World(kb, objects, store, work)
    kb.close()


def test_backup_wipe_restore_gives_back_the_same_knowledge_base(world):
    before = world.state()
    assert before["docs"]["generations"] == [(1, "retired", "hash-256@1"), (2, "live", "hash-64@1")]
    path = world.backup()
    manifest = read_archive(path, spec=BACKUP_ARCHIVE).manifest
    assert manifest["counts"]["collections"] == 3 and manifest["counts"]["points"] == 5 + 5 + 1
    assert manifest["counts"]["blobs"] == 6 and manifest["counts"]["documents"] == 6
    assert manifest["format_version"] == 3 and {c["layout"] for c in manifest["collections"]} == {"shard"}
    # blobs are counted, not listed (a manifest no longer grows with the documents)
    assert manifest["blobs"]["count"] == 6 and not [m for m in manifest["members"] if m["name"].startswith("blobs/")]
    # Edge preallocates 128 MiB of files for a small collection: the backup holds their data only
    assert path.stat().st_size < 5 << 20

    world.wipe()
    assert world.kb.list_containers() == [] and world.collections() == set()
    report = world.restore(path)

    assert world.state() == before
    assert {slug: all(c.passed for c in checks) for slug, checks in report.checks.items()} == {"docs": True, "other": True}
    assert report.blobs_put == 6 and report.rows["chunks"] == 6
    # the retained generation is back too: rollback works after a restore
    assert {"kb_docs__hash-256-1__g1", "kb_docs__hash-64-1__g2"} <= world.collections()


def test_restore_brings_back_every_row_exactly(world):
    """Timestamps, float32 vectors and text with tabs, line breaks and backslashes survive the copy
    out and back in (INSERT ... SELECT on SQLite, COPY on PostgreSQL)."""
    before = _rows(world.kb)
    assert any("\t" in row.text and "\\" in row.text for row in before["chunks"])
    path = world.backup()
    world.wipe()
    world.restore(path)
    assert _rows(world.kb) == before


def _rows(kb: KnowledgeBase) -> dict[str, list]:
    with kb.engine.connect() as conn:
        return {
            t.name: list(conn.execute(select(t).order_by(*t.primary_key.columns)))
            for t in backup_database.TABLES
        }


def test_leases_are_neither_backed_up_nor_restored(world):
    """A lease names an operation running on one database: the backup holds none, and a restore
    leaves the target's own alone."""
    docs = world.kb.get_container("docs")
    with world.kb.container_lease(docs.id, "run-backup", wait_seconds=0):
        path = world.backup()
    verified = world.verified(path)
    with backup_database.open_copy(verified.member(DATABASE)) as copy:
        assert copy.leases() == []
    with world.kb.kb_lease("run-restore", wait_seconds=0):
        world.restore_verified(verified, force=True)
        assert [(lease.key, lease.holder) for lease in world.kb.leases()] == [("kb", "run-restore")]


def test_dry_run_changes_nothing_and_a_live_kb_needs_force(world):
    before, collections = world.state(), world.collections()
    path = world.backup()
    plan = plan_restore(world.kb, world.store, world.verified(path))
    assert set(plan.containers["action"]) == {"replace"}
    assert plan.current_containers == 2 and len(plan.collections) == 3
    assert all(new.startswith(old + "__r") for old, new in plan.collections.items())
    with pytest.raises(RestoreRefused, match="force"):
        world.restore(path)
    assert world.state() == before and world.collections() == collections

    report = world.restore(path, force=True)
    assert world.state() == before
    assert world.collections() == set(report.plan.collections.values())  # the replaced ones are gone
    # a second restore does not grow the names
    again = world.restore(world.backup("again.tar"), force=True)
    assert all(name.count("__r") <= 1 for name in again.plan.collections.values())
    assert world.state() == before


def _rewrite(path: Path, out: Path, change) -> Path:
    """A copy of the backup tar with ``change(name, data) -> (name, data)`` applied to each member,
    the manifest left as it was."""
    with tarfile.open(path) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for info in src:
            data = src.extractfile(info).read()
            name, data = change(info.name, data)
            new = tarfile.TarInfo(name)
            new.size = len(data)
            dst.addfile(new, io.BytesIO(data))
    return out


def test_corrupt_truncated_and_hostile_backups_change_nothing(world):
    before, collections = world.state(), world.collections()
    path = world.backup()

    def corrupt(name, data):
        return name, (data[:-10] + b"0123456789") if name == "database.sqlite" else data

    with pytest.raises(ChecksumMismatch, match="database.sqlite"):
        world.restore(_rewrite(path, world.tmp / "corrupt.tar", corrupt), force=True)

    truncated = world.tmp / "truncated.tar"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="truncated"):
        world.restore(truncated, force=True)

    target = next(n for n in _names(path) if n.startswith("collections/kb_other"))

    def slip(name, data):
        return ("../../etc/evil" if name == target else name), data

    with pytest.raises(UnsafeMember, match="unsafe path"):
        world.restore(_rewrite(path, world.tmp / "slip.tar", slip), force=True)
    assert not (world.tmp.parent / "etc").exists()

    def container_format(name, data):
        if name != "manifest.json":
            return name, data
        manifest = json.loads(data)
        manifest["format"] = "ops-pipelines/container-archive"
        return name, json.dumps(manifest).encode()

    with pytest.raises(ArchiveError, match="kb-backup"):
        world.restore(_rewrite(path, world.tmp / "other-format.tar", container_format), force=True)

    with tarfile.open(path) as tar:
        blob_sizes = {m.name: m.size for m in tar if m.name.startswith("blobs/")}

    def version_1(name, data):  # version 1 had no shard layout (and listed its blobs)
        if name != "manifest.json":
            return name, data
        manifest = {**json.loads(data), "format_version": 1}
        del manifest["blobs"]
        manifest["members"] += [{"name": n, "size": size, "sha256": n.removeprefix("blobs/")} for n, size in blob_sizes.items()]
        return name, json.dumps(manifest).encode()

    with pytest.raises(ArchiveError, match="collection entry .* is invalid"):
        world.restore(_rewrite(path, world.tmp / "version-1.tar", version_1), force=True)

    def short_length(name, data):  # a shard file cut back to less than it holds
        if name != "manifest.json":
            return name, data
        manifest = json.loads(data)
        lengths = manifest["collections"][0]["lengths"]
        lengths[next(iter(lengths))] = 0
        return name, json.dumps(manifest).encode()

    with pytest.raises(ArchiveError, match="shard file lengths do not match"):
        world.restore(_rewrite(path, world.tmp / "short.tar", short_length), force=True)
    assert world.state() == before and world.collections() == collections


def test_blobs_the_object_store_holds_are_verified_but_not_extracted(world):
    path = world.backup()
    blobs = {name for name in _names(path) if name.startswith("blobs/")}
    verified = verify_backup(path, world.tmp / "held", world.objects)
    assert len(blobs) == 6 and list(verified.extracted_blobs()) == []
    assert not (world.tmp / "held" / "blobs").exists()

    def corrupt_blob(name, data):
        return name, (b"tampered" + data[8:]) if name == min(blobs) else data

    with pytest.raises(ChecksumMismatch, match=min(blobs)):
        verify_backup(_rewrite(path, world.tmp / "bad-blob.tar", corrupt_blob), world.tmp / "bad", world.objects)

    world.wipe()  # the object store lost its blobs: they are extracted and put back
    verified = verify_backup(path, world.tmp / "lost", world.objects)
    assert sorted(f"blobs/{sha}" for sha, _ in verified.extracted_blobs()) == sorted(blobs)
    assert world.restore_verified(verified).blobs_put == 6


def _names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


@pytest.mark.parametrize("world", ["edge", "server"], indirect=True)
def test_a_consistent_but_wrong_backup_fails_its_checks_before_anything_changes(world):
    """Checksums match (the manifest was rewritten too), but one point's payload hash lies: in a
    shard's files (a backup of the embedded engine) or in points.jsonl (a server's)."""
    before, collections = world.state(), world.collections()
    path = world.backup()
    with tarfile.open(path) as src:
        members = {info.name: src.extractfile(info).read() for info in src}
    manifest = json.loads(members.pop("manifest.json"))
    (other,) = [c["name"] for c in manifest["collections"] if c["name"].startswith("kb_other")]
    if world.store.keeps_files:
        (entry,) = [c for c in manifest["collections"] if c["name"] == other]
        entry["lengths"] = _forge_shard(members, other, entry["lengths"], world.tmp)
    else:
        target = f"collections/{other}/points.jsonl"
        point = json.loads(members[target])
        point["payload"]["chunk_hash"] = "0" * 64
        members[target] = json.dumps(point).encode() + b"\n"
    manifest["members"] = [
        {"name": n, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for n, data in members.items() if not n.startswith("blobs/")
    ]
    forged = world.tmp / "forged.tar"
    with tarfile.open(forged, "w") as dst:
        for name, data in [("manifest.json", json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    with pytest.raises(ArchiveError, match="payload_hashes"):
        world.restore(forged, force=True)
    assert world.state() == before and world.collections() == collections


def _forge_shard(members: dict[str, bytes], collection: str, lengths: dict[str, int], tmp: Path) -> dict[str, int]:
    """Rewrite the shard members of ``collection``: its one point with a lying chunk hash; returns
    the files' new lengths."""
    prefix = f"collections/{collection}/shard/"
    shard = tmp / "forge" / "shard"
    for name in [n for n in members if n.startswith(prefix)]:
        (shard / name.removeprefix(prefix)).parent.mkdir(parents=True, exist_ok=True)
        (shard / name.removeprefix(prefix)).write_bytes(members.pop(name))
    store = EdgeVectorStore(tmp / "forge" / "engine")
    try:
        store.adopt_files(collection, shard, 256, lengths)
        (point,) = store.scroll(collection, with_payload=True, with_vectors=True)
        store.upsert(collection, [point.id], point.vector[None], [{**point.payload, "chunk_hash": "0" * 64}])
        lengths, _ = store.copy_files(collection, tmp / "forge" / "out")
    finally:
        store.close()
    for file in lengths:
        members[prefix + file] = (tmp / "forge" / "out" / file).read_bytes()
    return lengths


@contextmanager
def _restored_elsewhere(kb_url, tmp_path, corpus, source, target, version):
    """Container ``docs`` synced and rotated to ``version`` on engine ``source``, backed up, its
    records deleted, and the backup restored on engine ``target``: yields the backup's manifest,
    the state before and the restored world."""
    kb = KnowledgeBase(kb_url)
    objects = FolderObjectStore(tmp_path / "objects")
    try:
        with backend_store(source, tmp_path / "from") as store:
            docs = _sync(kb, objects, store, "docs", corpus)
            embed_chunks(kb, docs, load_embedder, version)
            swap_to(kb, store, docs, build_generation(kb, store, docs, version).generation, retention=None)
            before = World(kb, objects, store, tmp_path).state()
            path = tmp_path / "kb.tar"
            write_backup(kb, store, objects, path, run_id="run-1")
        for container in kb.list_containers():
            kb.delete_container(container.id)
        with backend_store(target, tmp_path / "to") as store:
            world = World(kb, objects, store, tmp_path / "work")
            world.tmp.mkdir()
            world.restore(path)
            yield read_archive(path, spec=BACKUP_ARCHIVE).manifest, before, world
    finally:
        kb.close()


@pytest.mark.parametrize("source, target", [("edge", "server"), ("server", "edge")])
def test_a_backup_restores_onto_the_other_engine(kb_url, tmp_path, corpus, extra_embedders, source, target):
    """Shards' files restore onto a server (their points read through Qdrant Edge), a server's
    points onto the embedded engine: the same containers, generations and searches come back."""
    with _restored_elsewhere(kb_url, tmp_path, corpus, source, target, "hash-64@1") as (manifest, before, world):
        assert {c["layout"] for c in manifest["collections"]} == {"shard" if source == "edge" else "points"}
        assert world.state() == before
        assert {"kb_docs__hash-256-1__g1", "kb_docs__hash-64-1__g2"} <= world.collections()


@pytest.mark.parametrize("world", ["edge", "server"], indirect=True)
def test_golden_sets_fields_and_their_indexes_come_back(world, tmp_path, monkeypatch):
    from ops_pipelines.quality import register_golden_set

    docs = world.kb.get_container("docs")
    for body in ('{"query": "glaciers", "relevant": ["gamma.md"]}\n', '{"query": "ice", "relevant": ["gamma.md"]}\n'):
        register_golden_set(world.kb, docs, body, "golden.jsonl")
    records = tmp_path / "teams.jsonl"
    records.write_text(json.dumps({"id": "1", "text": "Rotate the keys yearly.", "team": "infra"}) + "\n")
    teams = world.kb.add_container("teams", "jsonl", str(records), "hash-256@1", declared_fields=("team",))
    sync_documents(world.kb, world.objects, teams, open_source("jsonl", str(records), fields=teams.declared_fields))
    chunk_documents(world.kb, teams)
    embed_chunks(world.kb, teams, load_embedder, "hash-256@1")
    sync_collection(world.kb, world.store, teams)

    def kept() -> dict:
        return {
            c.slug: (
                c.declared_fields,
                {key: state.fields for key, state in world.kb.document_states(c.id).items()},
                [(g.content_hash, g.body, g.created_at) for g in world.kb.golden_set_versions(c.id)],
            )
            for c in world.kb.list_containers()
        }

    before = kept()
    assert len(before["docs"][2]) == 2 and before["teams"][:2] == (("team",), {"1": {"team": "infra"}})
    path = world.backup()
    world.wipe()
    indexed = spy_field_indexes(monkeypatch, world.store)
    world.restore(path)
    assert kept() == before
    live = serving_of(world.kb, world.store, "teams")
    assert (live, "fields.team") in indexed and ("kb_docs__hash-256-1__g1", "fields.path") in indexed
    hits = search_container(world.kb, world.store, "teams", "keys", 5, where={"fields.team": "infra"})
    assert [h.payload["fields"] for h in hits] == [{"team": "infra"}]
    assert search_container(world.kb, world.store, "docs", "glaciers", 5, where={"fields.extension": "txt"})[0].payload[
        "source_key"] == "notes/epsilon.txt"


@pytest.mark.parametrize("source, target", [("edge", "edge"), ("edge", "server"), ("server", "edge")])
def test_a_hybrid_collection_comes_back_hybrid(kb_url, tmp_path, corpus, extra_embedders, source, target):
    """BM25 vectors are not in a points backup: the restore computes them again from the text, and
    the fused searches rank as before; a shard backup brings its own."""
    with extra_embedders.open("a") as registry:
        registry.write('\n[versions."hash-64-bm25@1"]\nprovider = "hashing"\ndimension = 64\nsparse = "bm25"\n')
    hybrid = "kb_docs__hash-64-bm25-1__g2"
    with _restored_elsewhere(kb_url, tmp_path, corpus, source, target, "hash-64-bm25@1") as (manifest, before, world):
        assert {e["name"]: e["hybrid"] for e in manifest["collections"]} == {hybrid: True, "kb_docs__hash-256-1__g1": False}
        assert world.store.is_hybrid(hybrid) and not world.store.is_hybrid("kb_docs__hash-256-1__g1")
        after = world.state()
        if source != target:  # the engines break ties of equal dense scores each its own way, and rank
            for state in (before, after):  # fusion turns those into different scores
                del state["docs"]["top"]
        assert after == before
        (hit,) = search_container(world.kb, world.store, "docs", "bicycles", 1)
        assert hit.payload["source_key"] == "beta.md" and hit.score < 0.05  # a rank fusion's score


def test_a_restore_that_dies_half_way_leaves_the_previous_state_serving(world, monkeypatch):
    """The database copy dies after it deleted every row and wrote some tables: the transaction
    rolls back, the restored collections are dropped, the aliases never moved."""
    before, collections = world.state(), world.collections()
    path = world.backup()
    written = []
    copy_inside, copy_postgres = backup_database._copy_inside_sqlite, backup_database._copy_into_postgres
    from_sqlite = backup_database._from_sqlite

    def spy_copy(conn, table):
        written.append(table.name)
        return copy_inside(conn, table)

    def spy_copy_postgres(conn, src, table):
        written.append(table.name)
        return copy_postgres(conn, src, table)

    def dies_at_generations(conn, table, row):
        if table.name == "generations":
            raise RuntimeError("killed")
        written.append(table.name)
        return from_sqlite(conn, table, row)

    monkeypatch.setattr(backup_database, "_copy_inside_sqlite", spy_copy)
    monkeypatch.setattr(backup_database, "_copy_into_postgres", spy_copy_postgres)
    monkeypatch.setattr(backup_database, "_from_sqlite", dies_at_generations)
    with pytest.raises(RuntimeError, match="killed"):
        world.restore(path, force=True)
    assert "containers" in written
    assert world.state() == before and world.collections() == collections


def test_a_missing_blob_fails_the_backup_with_what_to_do(world):
    key = next(iter(world.objects.list("blobs/")))
    world.objects.delete(key)
    with pytest.raises(ArchiveError, match="back up with --no-blobs / include_blobs: false"):
        world.backup()
    assert not (world.tmp / "kb.tar").exists()
    assert read_archive(world.backup("bare.tar", include_blobs=False), spec=BACKUP_ARCHIVE).manifest["counts"]["blobs"] == 0
