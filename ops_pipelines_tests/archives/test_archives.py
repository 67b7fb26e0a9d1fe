"""Container archives: round trip, and every kind of bad or hostile archive refused with a clear
error before anything is written."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from ops_pipelines.archives import (
    ArchiveError,
    ChecksumMismatch,
    ImportRefused,
    Limits,
    UnsafeMember,
    UnsupportedFormat,
    import_archive,
    read_archive,
    write_archive,
)
from ops_pipelines.archives.writer import HashingWriter
from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.embedders import load_embedder
from ops_pipelines.ingest import chunk_documents, embed_chunks, sync_collection, sync_documents
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.kb.golden_sets import QualityBounds
from ops_pipelines.objects import FolderObjectStore, blob_key
from ops_pipelines.search import search_container
from ops_pipelines.sources import open_source
from ops_pipelines.vectors import EdgeVectorStore, open_vector_store
from ops_pipelines_tests.conftest import serving_of, spy_field_indexes


@dataclass
class World:
    kb: KnowledgeBase
    objects: FolderObjectStore
    store: object
    tmp: Path

    def slugs(self) -> list[str]:
        return [c.slug for c in self.kb.list_containers()]

    def collections(self) -> set[str]:
        return set(self.store.collection_names())

    def top(self, slug: str, query: str) -> list[str]:
        """Every hit, so that no tie in score falls at the cut (which of equal scores an engine
        returns first is its own)."""
        return [h.payload["source_key"] for h in search_container(self.kb, self.store, slug, query, 10)]

    def load(self, path: Path, **kwargs):
        verified = read_archive(path, self.tmp / f"x-{path.stem}-{len(list(self.tmp.iterdir()))}")
        return import_archive(self.kb, self.objects, self.store, verified, load_embedder, **kwargs)


@pytest.fixture
def world(kb_url, tmp_path, corpus):
    yield from _synced_world(kb_url, tmp_path, corpus, "edge")


def _synced_world(kb_url, tmp_path, corpus, backend: str):
    """docs synced with hash-256@1 on one backend (``conftest.backend_store``)."""
    from ops_pipelines_tests.conftest import backend_store

    kb = KnowledgeBase(kb_url)
    objects = FolderObjectStore(tmp_path / "objects")
    with backend_store(backend, tmp_path / "qdrant") as store:
        container = kb.add_container("docs", "folder", str(corpus), "hash-256@1")
        sync_documents(kb, objects, container, open_source("folder", str(corpus)))
        chunk_documents(kb, container)
        embed_chunks(kb, container, load_embedder, "hash-256@1")
        sync_collection(kb, store, container)
        work = tmp_path / "work"
        work.mkdir()
        yield World(kb, objects, store, work)
    kb.close()


def export(world: World, fmt: str = "tar", **options) -> Path:
    path = world.tmp.parent / f"docs.{fmt}"
    write_archive(world.kb, world.objects, world.kb.get_container("docs"), path, fmt=fmt, run_id="run-1", **options)
    return path


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_round_trip_answers_the_same_searches(world, fmt):
    path = export(world, fmt)
    verified = read_archive(path)
    manifest = verified.manifest
    assert (manifest["format_version"], manifest["run_id"], manifest["container"]["slug"]) == (3, "run-1", "docs")
    assert manifest["counts"] == {"documents": 5, "chunks": 5, "vectors": 5, "golden_sets": 0, "blobs": 5}
    # blobs are counted, not listed: they follow the listed members in ascending name order
    listed = ["documents.jsonl", "chunks.jsonl", "vectors.npy", "golden_sets.jsonl"]
    assert [m["name"] for m in manifest["members"]] == listed
    names = _names(path)
    blobs = names[5:]
    assert names[0] == "manifest.json" and len(blobs) == 5 and blobs == sorted(blobs)
    sizes = [world.objects.size(blob_key(name.removeprefix("blobs/"))) for name in blobs]
    assert manifest["blobs"] == {"count": 5, "bytes": sum(sizes)}

    report = world.load(path, slug="copy")
    assert (report.documents, report.chunks, report.vectors_from_archive, report.embedded) == (5, 5, True, 0)
    assert all(c.passed for c in report.checks)
    for query in ("glaciers and ice", "apples in autumn", "bicycle gears"):
        assert world.top("copy", query) == world.top("docs", query)


def test_without_vectors_or_in_another_version_the_import_re_embeds(world, extra_embedders):
    bare = export(world, include_vectors=False, include_blobs=False)
    assert read_archive(bare).manifest["counts"] == {"documents": 5, "chunks": 5, "golden_sets": 0}
    report = world.load(bare, slug="bare")
    assert (report.vectors_from_archive, report.blobs) == (False, 0)
    other = world.load(export(world), slug="small", embedder_version="hash-64@1")
    assert (other.vectors_from_archive, other.embedded, other.container.embedder_version) == (False, 5, "hash-64@1")
    assert world.top("small", "glaciers and ice")[0] == "gamma.md"


def test_an_import_into_a_version_with_another_chunker_cuts_its_chunks_first(world, tmp_path, monkeypatch):
    registry = tmp_path / "tokens.toml"
    registry.write_text(
        '[versions."hash-256-tokens@1"]\nprovider = "hashing"\ndimension = 256\nwindow = 256\n'
        'chunker = "minilm-tokens-254@1"\n'
    )
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(registry))
    path = export(world)
    assert read_archive(path).manifest["embedder"]["chunker"] == "para-800@1"
    report = world.load(path, slug="tokens", embedder_version="hash-256-tokens@1")
    assert (report.vectors_from_archive, report.embedded, report.chunks) == (False, 5, 5)
    assert all(c.passed for c in report.checks)
    imported = world.kb.get_container("tokens")
    assert world.kb.count_active_chunks(imported.id, "minilm-tokens-254@1") == 5  # cut beside the archive's
    assert world.kb.count_active_chunks(imported.id, PARA) == 5
    assert world.top("tokens", "glaciers and ice")[0] == "gamma.md"


def test_import_into_an_existing_slug_needs_force_and_replaces_without_a_gap(world):
    path = export(world)
    before = world.collections()
    with pytest.raises(ImportRefused, match="'docs' already exists.*force"):
        world.load(path)
    assert world.collections() == before and world.slugs() == ["docs"]
    report = world.load(path, force=True)
    assert report.replaced and report.collection == "kb_docs__hash-256-1__g2"
    assert world.slugs() == ["docs"]
    assert serving_of(world.kb, world.store, "docs") == "kb_docs__hash-256-1__g2"
    assert world.collections() == {"kb_docs__hash-256-1__g2"}


def test_a_failed_forced_import_leaves_the_old_container_serving(world, monkeypatch):
    def broken(*args, **kwargs):  # the new collection exists, its points never arrive
        raise ConnectionError("qdrant went away")

    monkeypatch.setattr(EdgeVectorStore, "upsert", broken)
    with pytest.raises(ConnectionError):
        world.load(export(world), force=True)
    assert world.slugs() == ["docs"]
    assert serving_of(world.kb, world.store, "docs") == "kb_docs__hash-256-1__g1"
    assert world.collections() == {"kb_docs__hash-256-1__g1"}
    assert world.top("docs", "glaciers and ice")[0] == "gamma.md"


# ---- hostile and broken archives --------------------------------------------------------


def _names(path: Path) -> list[str]:
    if zipfile.is_zipfile(path):
        return zipfile.ZipFile(path).namelist()
    with tarfile.open(path) as tar:
        return tar.getnames()


def _members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]


def _tar(path: Path, entries: list) -> Path:
    """Write entries: (name, bytes) regular files, or ready TarInfo objects with bytes."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info, data = entry if isinstance(entry[0], tarfile.TarInfo) else (tarfile.TarInfo(entry[0]), entry[1])
            if info.isreg():
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _repacked(world: World, edit, fix_manifest: bool = True) -> Path:
    """The exported archive with its members edited; the manifest re-computed to match (so only
    deeper validation can catch the edit) unless ``fix_manifest`` is False."""
    members = dict(_members(export(world)))
    manifest = json.loads(members.pop("manifest.json"))
    edit(members, manifest)
    listed = {n: b for n, b in members.items() if not n.startswith("blobs/")}
    blobs = sorted((n, b) for n, b in members.items() if n.startswith("blobs/"))
    if fix_manifest:
        manifest["members"] = [{"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in listed.items()]
        manifest["blobs"] = {"count": len(blobs), "bytes": sum(len(b) for _, b in blobs)}
    entries = [("manifest.json", json.dumps(manifest).encode()), *listed.items(), *blobs]
    return _tar(world.tmp.parent / "edited.tar", entries)


def _unlisting(name: str):
    """Members whose manifest (the first) no longer lists ``name``."""

    def edit(members):
        manifest = json.loads(members[0][1])
        manifest["members"] = [m for m in manifest["members"] if m["name"] != name]
        return [("manifest.json", json.dumps(manifest).encode()), *members[1:]]

    return edit


def _link(kind: bytes, name: str, target: str) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def _hostile_cases():
    return {
        "absolute path": (lambda m: [m[0], ("/etc/cron.d/evil", b"x")], UnsafeMember, "unsafe path"),
        "dot-dot": (lambda m: [m[0], ("blobs/../../evil", b"x")], UnsafeMember, "unsafe path"),
        "symlink": (lambda m: [m[0], _link(tarfile.SYMTYPE, "documents.jsonl", "/etc/passwd")], UnsafeMember, "symbolic link"),
        "hard link": (lambda m: [m[0], _link(tarfile.LNKTYPE, "chunks.jsonl", "manifest.json")], UnsafeMember, "hard link"),
        "device": (lambda m: [m[0], _link(tarfile.CHRTYPE, "vectors.npy", "")], UnsafeMember, "device"),
        "directory": (lambda m: [m[0], _link(tarfile.DIRTYPE, "blobs", "")], UnsafeMember, "directory"),
        "unknown member": (lambda m: [m[0], ("run.sh", b"rm -rf /")], UnsafeMember, "not part of the archive format"),
        "manifest not first": (lambda m: [m[1], m[0], *m[2:]], ArchiveError, "not an ops-pipelines archive"),
        "duplicate member": (lambda m: [*m, m[1]], UnsafeMember, "appears twice"),
        "unlisted member": (_unlisting("vectors.npy"), UnsafeMember, "not listed in the manifest"),
        "repeated blob": (lambda m: [*m, m[-1]], UnsafeMember, "repeats or is out of order"),
        "blob out of order": (lambda m: [*m, (f"blobs/{'0' * 64}", b"x")], UnsafeMember, "repeats or is out of order"),
        "missing blob": (lambda m: m[:-1], ArchiveError, "holds 4 blobs of .* the manifest says 5"),
        "missing member": (lambda m: [x for x in m if x[0] != "vectors.npy"], ArchiveError, "missing"),
    }


@pytest.mark.parametrize("case", list(_hostile_cases()))
def test_hostile_tar_members_are_refused_before_anything_is_written(world, case):
    build, error, message = _hostile_cases()[case]
    path = _tar(world.tmp.parent / "hostile.tar", build(_members(export(world))))
    with pytest.raises(error, match=message):
        world.load(path)
    assert world.slugs() == ["docs"]
    assert not Path("/etc/cron.d/evil").exists()
    assert not [p for p in world.tmp.parent.rglob("*") if p.name in ("evil", "run.sh") or p.is_symlink()]


def test_a_changed_byte_fails_the_checksum(world):
    members = _members(export(world))
    name, data = members[1]
    members[1] = (name, data[:-2] + bytes([data[-2] ^ 1]) + data[-1:])  # same size, one bit
    with pytest.raises(ChecksumMismatch, match=f"member {name}: sha256"):
        read_archive(_tar(world.tmp.parent / "flipped.tar", members))


@pytest.mark.parametrize("where", ["in the manifest", "in a header", "in the last member"])
def test_a_truncated_archive_is_refused(world, where):
    source = export(world)
    with tarfile.open(source) as tar:
        members = tar.getmembers()
    cut = {
        "in the manifest": members[0].offset_data + 10,
        "in a header": members[3].offset + 100,
        "in the last member": members[-1].offset_data + members[-1].size - 3,
    }[where]
    path = world.tmp.parent / "cut.tar"
    path.write_bytes(source.read_bytes()[:cut])
    with pytest.raises(ArchiveError, match="truncated|missing|corrupt"):
        world.load(path)
    assert world.slugs() == ["docs"]


def test_an_unknown_format_version_is_refused(world):
    path = _repacked(world, lambda members, manifest: manifest.update(format_version=4))
    with pytest.raises(UnsupportedFormat, match=r"format version 4 is not supported.*reads version\(s\) 1, 2, 3$"):
        read_archive(path)


def test_a_manifest_that_lists_its_blobs_or_miscounts_them_is_refused(world):
    def listing(members, manifest):  # version 2 on counts blobs: a list of them is a forgery or a bug
        blob = next(n for n in members if n.startswith("blobs/"))
        manifest["members"] = [{"name": blob, "size": len(members[blob]), "sha256": blob.removeprefix("blobs/")}]

    listed = _repacked(world, listing, fix_manifest=False)
    with pytest.raises(ArchiveError, match="lists blob members, which format version 3 counts instead"):
        read_archive(listed)
    without = _repacked(world, lambda members, manifest: manifest.pop("blobs"), fix_manifest=False)
    with pytest.raises(ArchiveError, match="lacks a valid 'blobs' section"):
        read_archive(without)
    extra = hashlib.sha256(b"x").hexdigest()  # a sound blob, in its place, that the manifest does not count
    added = _repacked(world, lambda members, manifest: members.__setitem__(f"blobs/{extra}", b"x"), fix_manifest=False)
    with pytest.raises(ArchiveError, match=r"holds 6 blobs of \d+ bytes, the manifest says 5"):
        world.load(added, slug="copy")
    assert world.slugs() == ["docs"]


def test_not_an_archive(world):
    path = world.tmp.parent / "random.tar"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ArchiveError, match="neither a tar nor a zip"):
        read_archive(path)


def test_size_limits(world):
    path = export(world)
    with pytest.raises(UnsafeMember, match="over the limit of 100"):
        read_archive(path, limits=Limits(member_bytes=100))
    with pytest.raises(UnsafeMember, match="exceeds the limit"):
        read_archive(path, limits=Limits(total_bytes=2000))


def test_a_zip_bomb_is_refused_by_its_ratio(world):
    path = world.tmp.parent / "bomb.zip"
    manifest = dict(_members(export(world)))["manifest.json"]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", manifest)
        archive.writestr("documents.jsonl", b"\0" * (64 << 20))
    with pytest.raises(UnsafeMember, match="zip bomb"):
        read_archive(path, world.tmp / "bomb")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m, _: m.__setitem__("chunks.jsonl", m["chunks.jsonl"].replace(b"apples", b"pears", 1)), "content_hash does not match"),
        (lambda m, _: m.__setitem__("documents.jsonl", b"{not json\n"), "not valid JSON"),
        (lambda m, mf: mf["counts"].update(chunks=6), "the manifest counts"),
        (lambda m, _: m.__setitem__("vectors.npy", _npy(np.full((5, 256), np.nan, dtype="<f4"))), "NaN"),
        (lambda m, _: m.__setitem__("vectors.npy", _npy(np.ones((5, 8), dtype="<f4"))), r"expected float32 \(5, 256\)"),
        (lambda m, _: m.__setitem__(f"blobs/{'a' * 64}", m.pop(next(k for k in m if k.startswith("blobs/")))), "does not match its name"),
    ],
)
def test_consistent_but_wrong_contents_are_refused_and_nothing_is_written(world, edit, message):
    path = _repacked(world, edit)
    before = (world.collections(), sorted(p.name for p in (world.objects.root / "blobs").rglob("*")))
    with pytest.raises(ArchiveError, match=message):
        world.load(path, slug="copy")
    assert world.slugs() == ["docs"]
    assert (world.collections(), sorted(p.name for p in (world.objects.root / "blobs").rglob("*"))) == before


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_documents_spanning_import_batches_keep_every_chunk(world, corpus, monkeypatch):
    import ops_pipelines.archives.importer as importer

    (corpus / "long.md").write_text("# Long\n\n" + "\n\n".join(f"Part {i}: " + "words " * 120 for i in range(7)))
    docs = world.kb.get_container("docs")
    sync_documents(world.kb, world.objects, docs, open_source("folder", str(corpus)))
    chunk_documents(world.kb, docs)
    embed_chunks(world.kb, docs, load_embedder, "hash-256@1")
    monkeypatch.setattr(importer, "_BATCH", 2)  # every batch boundary falls inside long.md
    report = world.load(export(world), slug="copy")

    def chunks(slug):
        return [(r.source_key, r.ordinal, r.content_hash) for r in world.kb.active_chunks(world.kb.get_container(slug).id, PARA)]

    assert len(chunks("docs")) > 9 and chunks("copy") == chunks("docs")
    assert report.chunks == len(chunks("docs")) and all(c.passed for c in report.checks)


def test_a_corrupt_or_missing_blob_stops_the_export_and_leaves_no_archive(world):
    key = next(k for k in world.objects.list("blobs/"))
    original = world.objects.get_bytes(key)
    world.objects.put_bytes(key, original.upper())
    with pytest.raises(ArchiveError, match="corrupt"):
        export(world)
    world.objects.delete(key)
    with pytest.raises(ArchiveError, match=f"missing from the object store: put it back at {key}"):
        export(world)
    assert not list(world.tmp.parent.glob("docs.tar*"))
    export(world, include_blobs=False)  # the way out the message names


# ---- document fields, declared fields and golden sets travel (format 3) -------------------

GOLDEN = ['{"query": "glaciers", "relevant": ["gamma.md"]}\n', '{"query": "apples", "relevant": ["alpha.md"]}\n']


def _document_fields(kb: KnowledgeBase, slug: str) -> dict:
    container = kb.get_container(slug)
    return {key: state.fields for key, state in kb.document_states(container.id).items()}


def _golden_sets(kb: KnowledgeBase, slug: str) -> list[tuple]:
    return [(g.content_hash, g.body, g.queries) for g in kb.golden_set_versions(kb.get_container(slug).id)]


def test_fields_and_every_golden_set_version_are_exported_and_imported(world, monkeypatch):
    from ops_pipelines.quality import register_golden_set

    docs = world.kb.get_container("docs")
    for body in GOLDEN:  # two versions: the second is the one in use
        register_golden_set(world.kb, docs, body, "golden.jsonl")
    world.kb.set_quality_bounds(docs.id, QualityBounds(tolerance=0.05))
    indexed = spy_field_indexes(monkeypatch, world.store)
    path = export(world)
    manifest = read_archive(path).manifest
    assert manifest["counts"]["golden_sets"] == 2 and manifest["container"]["declared_fields"] == []
    assert manifest["container"]["quality_gate"] == {"tolerance": 0.05, "floor": None}
    alpha = json.loads(dict(_members(path))["documents.jsonl"].splitlines()[0])
    assert alpha["fields"] == {"extension": "md", "path": "alpha.md"}

    report = world.load(path, slug="copy")
    assert _document_fields(world.kb, "copy") == _document_fields(world.kb, "docs")
    assert _golden_sets(world.kb, "copy") == _golden_sets(world.kb, "docs") and len(_golden_sets(world.kb, "copy")) == 2
    copy = world.kb.get_container("copy")
    assert world.kb.golden_set(copy.id).body == GOLDEN[1]  # the newest is in use, as it was
    assert world.kb.quality_bounds(copy.id) == QualityBounds(tolerance=0.05)  # and the gate's bounds
    assert [g.created_at for g in world.kb.golden_set_versions(copy.id)] == [
        g.created_at for g in world.kb.golden_set_versions(docs.id)
    ]
    assert {(report.collection, "fields.extension"), (report.collection, "fields.path")} <= set(indexed)
    vector = load_embedder("hash-256@1").embed_queries(["apples"])[0]
    hits = world.store.search(report.collection, vector, limit=5, where={"fields.path": "notes/epsilon.txt"})
    assert [h.payload["source_key"] for h in hits] == ["notes/epsilon.txt"]


def test_a_jsonl_containers_declared_fields_travel(world, tmp_path):
    path = tmp_path / "teams.jsonl"
    path.write_text(json.dumps({"id": "1", "text": "Rotate the keys yearly.", "team": "infra"}) + "\n")
    teams = world.kb.add_container("teams", "jsonl", str(path), "hash-256@1", declared_fields=("team",))
    sync_documents(world.kb, world.objects, teams, open_source("jsonl", str(path), fields=teams.declared_fields))
    chunk_documents(world.kb, teams)
    embed_chunks(world.kb, teams, load_embedder, "hash-256@1")
    archive = world.tmp.parent / "teams.tar"
    write_archive(world.kb, world.objects, teams, archive)
    world.load(archive, slug="teams-copy")
    assert world.kb.get_container("teams-copy").declared_fields == ("team",)
    assert _document_fields(world.kb, "teams-copy") == {"1": {"team": "infra"}}


def _as_version_2(members, manifest):
    """What an export of format version 2 holds: no fields, declared fields nor golden sets."""
    manifest["format_version"] = 2
    del manifest["container"]["declared_fields"], manifest["counts"]["golden_sets"], members["golden_sets.jsonl"]
    lines = [json.loads(line) for line in members["documents.jsonl"].splitlines()]
    lines = [{k: v for k, v in record.items() if k != "fields"} for record in lines]
    members["documents.jsonl"] = b"".join(json.dumps(record).encode() + b"\n" for record in lines)


def test_a_version_2_archive_imports_with_its_fields_not_known_yet(world):
    report = world.load(_repacked(world, _as_version_2), slug="old")
    assert report.documents == 5 and all(c.passed for c in report.checks)
    assert set(_document_fields(world.kb, "old").values()) == {None}  # the next sync reads them
    assert _golden_sets(world.kb, "old") == []


def _edit_member(name: str, old: bytes, new: bytes):
    def repack(members, manifest):
        members[name] = members[name].replace(old, new, 1)

    return repack


@pytest.mark.parametrize(
    "edit, message",
    [
        (_edit_member("golden_sets.jsonl", b"glaciers", b"glaciers!"), "content_hash or queries do not"),
        (_edit_member("golden_sets.jsonl", b"+00:00", b""), "created_at has no time zone"),
        (_edit_member("golden_sets.jsonl", b'"queries":1', b'"queries":"1"'), "field 'queries' is"),
        (lambda m, mf: mf["counts"].update(golden_sets=3), "counts 3 golden set versions"),
        (_edit_member("documents.jsonl", b'"extension":"md"', b'"extension":1'), "object of strings"),
        (lambda m, mf: mf["container"].update(declared_fields=["team"]), "takes no declared fields"),
        (lambda m, mf: mf["container"].update(quality_gate={"tolerance": 3}), "quality_gate is not"),
        (lambda m, mf: mf["container"].update(quality_gate=[0.1]), "quality_gate is not"),
    ],
)
def test_bad_fields_or_golden_sets_are_refused_and_nothing_is_written(world, edit, message):
    from ops_pipelines.quality import register_golden_set

    register_golden_set(world.kb, world.kb.get_container("docs"), GOLDEN[0], "golden.jsonl")
    path = _repacked(world, edit)
    before = world.collections()
    with pytest.raises(ArchiveError, match=message):
        world.load(path, slug="copy")
    assert world.slugs() == ["docs"] and world.collections() == before


# ---- the format, unchanged ----------------------------------------------------------------

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy"


def test_the_tar_is_the_one_tarfile_writes(world):
    """The writer's own tar loop gives the bytes ``tarfile`` writes for the same members (pax,
    mode 0644, the manifest's time), and the sha256 it reports is theirs."""
    path = world.tmp.parent / "docs.tar"
    report = write_archive(world.kb, world.objects, world.kb.get_container("docs"), path)
    members = _members(path)
    mtime = int(datetime.fromisoformat(json.loads(members[0][1])["created_at"]).timestamp())
    expected = world.tmp / "by-tarfile.tar"
    with tarfile.open(expected, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    assert path.read_bytes() == expected.read_bytes()
    assert (report.size, report.sha256) == (expected.stat().st_size, hashlib.sha256(expected.read_bytes()).hexdigest())


def test_the_export_of_the_legacy_kb_holds_the_legacy_archives_members_byte_for_byte(tmp_path):
    """The KB the old code exported (fixtures/legacy, format version 1) exported again: every
    member is the old archive's, byte for byte (its documents' fields are not known: left out);
    of the manifest only the time and run id differ, the container's sync time and declared fields
    were added, the blobs are counted instead of listed (version 2), and its golden sets (none)
    are a member of their own (version 3)."""
    shutil.copy(LEGACY / "kb.sqlite", tmp_path / "kb.sqlite")
    objects = FolderObjectStore(tmp_path / "objects")
    for path in (LEGACY / "corpus").rglob("*"):
        if path.is_file():
            objects.put_blob(hashlib.sha256(path.read_bytes()).hexdigest(), path.read_bytes())
    kb = KnowledgeBase(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    try:
        write_archive(kb, objects, kb.get_container("legacy"), tmp_path / "again.tar", run_id="again")
    finally:
        kb.close()
    old, new = dict(_members(LEGACY / "export.tar")), dict(_members(tmp_path / "again.tar"))
    assert len(old) == 8  # manifest, documents, chunks, vectors, 4 blobs
    assert new.pop("golden_sets.jsonl") == b"" and list(new) == list(old)
    assert {name: data for name, data in new.items() if old[name] != data}.keys() == {"manifest.json"}
    old_manifest, new_manifest = json.loads(old["manifest.json"]), json.loads(new["manifest.json"])
    changed = {key for key in old_manifest if old_manifest[key] != new_manifest[key]}
    assert changed == {"created_at", "run_id", "container", "format_version", "members", "counts"}
    assert new_manifest["counts"] == {**old_manifest["counts"], "golden_sets": 0}
    assert new_manifest.keys() - old_manifest.keys() == {"blobs"}
    old_blobs = [m for m in old_manifest["members"] if m["name"].startswith("blobs/")]
    assert new_manifest["members"][:-1] == [m for m in old_manifest["members"] if m not in old_blobs]
    assert new_manifest["members"][-1]["name"] == "golden_sets.jsonl"
    assert new_manifest["blobs"] == {"count": 4, "bytes": sum(m["size"] for m in old_blobs)}
    added = {k: v for k, v in new_manifest["container"].items() if k not in old_manifest["container"]}
    assert old_manifest["container"] == {k: v for k, v in new_manifest["container"].items() if k not in added}
    assert added == {"last_synced_at": "2026-12-01T21:28:53.156163+00:00", "declared_fields": []}  # its last sync


def test_the_legacy_export_still_verifies_and_imports(world):
    copy = world.tmp.parent / "legacy-export.tar"
    shutil.copy(LEGACY / "export.tar", copy)
    report = world.load(copy, slug="legacy")
    assert (report.documents, report.chunks, report.blobs, report.vectors_from_archive) == (4, 4, 4, True)
    assert all(c.passed for c in report.checks)


def test_a_failed_write_surfaces_from_the_writers_thread():
    out = HashingWriter(Path("/dev/full"))  # every write fails: no space left on the device
    out.write(bytes(3 << 20))
    with pytest.raises(OSError, match="No space left"):
        out.close()


# ---- a manifest that lies about the dimension -------------------------------------------


def _false_dimension(case: str):
    """The manifest says 384-d for hash-256@1 (256-d in the registry): over the real 256-d vectors,
    over 384-d vectors that agree with it, or with no vectors at all."""

    def edit(members, manifest):
        manifest["embedder"]["dimension"] = 384
        if case == "384-d vectors":
            rows = np.random.default_rng(1).normal(size=(5, 384)).astype("<f4")
            members["vectors.npy"] = _npy(rows / np.linalg.norm(rows, axis=1, keepdims=True))
        if case == "no vectors":
            del members["vectors.npy"]
            manifest["options"]["include_vectors"] = False
            del manifest["counts"]["vectors"]

    return edit


@pytest.mark.parametrize(
    "case, message",
    [
        ("256-d vectors", r"vectors.npy is float32 \(5, 256\), expected float32 \(5, 384\)"),
        ("384-d vectors", r"says hash-256@1 makes 384-d vectors, this embedder registry says 256-d"),
        ("no vectors", r"says hash-256@1 makes 384-d vectors, this embedder registry says 256-d"),
    ],
)
def test_a_false_manifest_dimension_is_refused_by_verify_and_import(world, extra_embedders, case, message):
    from click.testing import CliRunner

    from ops_pipelines.cli import main

    path = _repacked(world, _false_dimension(case))
    result = CliRunner().invoke(main, ["archive", "verify", str(path)], catch_exceptions=False)
    assert result.exit_code == 1 and result.output.startswith("Error: INVALID:")
    assert re.search(message, result.output), result.output

    before = (world.collections(), sorted(p.name for p in (world.objects.root / "blobs").rglob("*")))
    for target in (None, "hash-256@1"):
        with pytest.raises(ArchiveError, match=message):
            world.load(path, slug="copy", embedder_version=target)
    assert world.slugs() == ["docs"] and world.kb.get_container("docs").slug == "docs"
    assert (world.collections(), sorted(p.name for p in (world.objects.root / "blobs").rglob("*"))) == before
    if case != "256-d vectors":  # re-embedded under another version, the archive's vectors do not count
        report = world.load(path, slug="copy", embedder_version="hash-64@1")
        assert (report.vectors_from_archive, report.embedded) == (False, 5)


def test_verify_names_an_embedder_version_this_registry_lacks(world):
    from click.testing import CliRunner

    from ops_pipelines.cli import main

    path = _repacked(world, lambda members, manifest: manifest["embedder"].update(version="elsewhere@3"))
    result = CliRunner().invoke(main, ["archive", "verify", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "elsewhere@3, 256-d (not in this embedder registry: import it with --embedder-version)" in result.output


# ---- vectors from an archive stay out of the shared embedding cache ----------------------


@pytest.fixture
def elsewhere(kb_url, tmp_path):
    """Another deployment on the same backend: a fresh metadata DB, object store and Qdrant."""
    from ops_pipelines_tests.conftest import throwaway_database

    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}" if kb_url.startswith("sqlite") else stack.enter_context(
            throwaway_database()
        )
        kb = KnowledgeBase(url)
        stack.callback(kb.close)
        store = stack.enter_context(open_vector_store(path=str(tmp_path / "elsewhere-qdrant")))
        work = tmp_path / "elsewhere"
        work.mkdir()
        yield World(kb, FolderObjectStore(tmp_path / "elsewhere-objects"), store, work)


def test_a_forged_vector_from_an_archive_never_reaches_another_container(world, elsewhere, corpus):
    """An export with one vector changed and its checksums recomputed imports (its checks search
    with that same vector), but another container synced from the real corpus computes its own."""
    forged = np.random.default_rng(7).normal(size=256).astype("<f4")
    forged /= np.linalg.norm(forged)

    def forge(members, manifest):
        vectors = np.load(io.BytesIO(members["vectors.npy"]))
        vectors[2] = forged
        members["vectors.npy"] = _npy(vectors)

    report = elsewhere.load(_repacked(world, forge), slug="imported")
    assert report.vectors_from_archive and all(c.passed for c in report.checks)
    imported = elsewhere.kb.get_container("imported")
    (row,) = [r for r in elsewhere.kb.active_chunks(imported.id, PARA) if r.source_key == sorted_keys(elsewhere, "imported")[2]]

    other = elsewhere.kb.add_container("other", "folder", str(corpus), "hash-256@1")
    sync_documents(elsewhere.kb, elsewhere.objects, other, open_source("folder", str(corpus)))
    chunk_documents(elsewhere.kb, other)
    embedded = embed_chunks(elsewhere.kb, other, load_embedder, "hash-256@1")
    assert (embedded.computed, embedded.cached) == (5, 0)  # nothing of the archive's is trusted
    sync_collection(elsewhere.kb, elsewhere.store, other)

    real = load_embedder("hash-256@1").embed([row.text])[0]
    assert np.allclose(elsewhere.kb.get_embeddings("hash-256@1", [row.content_hash])[row.content_hash], real)
    assert np.allclose(point_vector(elsewhere, other, row.content_hash), real)
    assert not np.allclose(point_vector(elsewhere, other, row.content_hash), forged)
    # The imported container keeps what its archive brought: that is the trust its operator gave it.
    assert np.allclose(point_vector(elsewhere, imported, row.content_hash), forged)


def sorted_keys(w: World, slug: str) -> list[str]:
    return sorted(r.source_key for r in w.kb.active_chunks(w.kb.get_container(slug).id, PARA))


def point_vector(w: World, container, chunk_hash: str) -> np.ndarray:
    collection = serving_of(w.kb, w.store, container.slug)
    (point,) = [p for p in w.store.scroll(collection, with_payload=True, with_vectors=True) if p.payload["chunk_hash"] == chunk_hash]
    return point.vector


# ---- a forced import on a Qdrant server: the alias moves once, nothing is left behind --------


@pytest.fixture
def served(kb_url, tmp_path, corpus):
    """docs synced on the server backend (qdrant-client's local mode: the stand-in for a server)."""
    yield from _synced_world(kb_url, tmp_path, corpus, "server")


def test_a_forced_import_on_a_server_moves_the_alias_and_leaves_nothing_behind(served):
    report = served.load(export(served), force=True)
    assert report.replaced and report.collection == "kb_docs__hash-256-1__g2"
    assert served.store.aliases() == {"kb_docs": "kb_docs__hash-256-1__g2"}  # no alias of a temporary slug
    assert served.collections() == {"kb_docs__hash-256-1__g2"}
    assert [c.slug for c in served.kb.list_containers(every_state=True)] == ["docs"]
    assert served.top("docs", "glaciers and ice")[0] == "gamma.md"


def killed_before_the_alias_moved(served: World, monkeypatch) -> tuple[Path, object]:
    """A forced import killed between the transaction that parks the old container and the alias
    move: the archive, and the parked container it left."""
    import ops_pipelines.archives.importer as importer

    def killed(*args):
        raise KeyboardInterrupt("SIGKILL")

    path = export(served)
    with monkeypatch.context() as patched:
        patched.setattr(importer, "publish", killed)
        with pytest.raises(KeyboardInterrupt):
            served.load(path, force=True)
    (parked,) = [c for c in served.kb.list_containers(every_state=True) if c.state == "parked"]
    assert parked.slug.startswith("docs-replaced-") and parked.import_slug == "docs"
    return path, parked


def test_killed_before_its_alias_moved_a_forced_import_is_finished_by_the_next(served, monkeypatch):
    path, _ = killed_before_the_alias_moved(served, monkeypatch)
    assert served.store.aliases() == {"kb_docs": "kb_docs__hash-256-1__g1"}  # still the parked one's, kept
    assert served.top("docs", "glaciers and ice")[0] == "gamma.md"

    report = served.load(path, force=True)  # removes the parked one (its alias moved first), replaces docs
    assert served.store.aliases() == {"kb_docs": report.collection}
    assert served.collections() == {report.collection}
    assert [c.slug for c in served.kb.list_containers(every_state=True)] == ["docs"]


def test_a_parked_container_still_behind_the_alias_is_removed_once_the_alias_moved(served, monkeypatch):
    from ops_pipelines.containers import ContainerServing, remove_container

    _, parked = killed_before_the_alias_moved(served, monkeypatch)
    removal = remove_container(served.kb, served.store, parked.slug, "test")
    assert removal.dropped == ["kb_docs__hash-256-1__g1"] and not removal.kept
    assert served.store.aliases() == {"kb_docs": "kb_docs__hash-256-1__g2"}
    assert served.top("docs", "glaciers and ice")[0] == "gamma.md"
    with pytest.raises(ContainerServing, match=r"'docs' serves searches \(kb_docs -> kb_docs__hash-256-1__g2\)"):
        remove_container(served.kb, served.store, "docs", "test")


def test_an_import_under_the_slug_of_a_parked_container_is_refused(served, monkeypatch):
    path, parked = killed_before_the_alias_moved(served, monkeypatch)
    with pytest.raises(ImportRefused, match=f"'{parked.slug}' is the slug of a container in state parked"):
        served.load(path, slug=parked.slug, force=True)
