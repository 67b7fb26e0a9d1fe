"""fill_collection and document fields: a change of fields alone keeps the point ids, and still
reaches every point of the document; the payload indexes exist for filtered searches (both
metadata DBs, both vector store backends)."""

from __future__ import annotations

import json

import pytest

from ops_pipelines.embedders import load_embedder
from ops_pipelines.ingest import chunk_documents, embed_chunks, fill_collection, sync_collection, sync_documents
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.sources import open_source
from ops_pipelines_tests.conftest import spy_field_indexes

# Two paragraphs of 500 characters: two chunks (para-800@1 packs paragraphs up to 800).
APPLES = ("Apples grow in orchards. " * 20).strip() + "\n\n" + ("They are picked in autumn. " * 19).strip()


@pytest.fixture
def records(tmp_path):
    """A JSONL file of three records with a team and a lang; ``write(changes)`` rewrites it."""
    path = tmp_path / "data.jsonl"
    rows = {
        "a": {"id": "a", "text": APPLES, "team": "fruit", "lang": "en"},
        "b": {"id": "b", "text": "Bicycles have gears and chains.", "team": "wheels", "lang": "en"},
        "c": {"id": "c", "text": "Glaciers carve mountain valleys.", "team": "ice", "lang": "fr"},
    }

    def write(**changes):
        for key, values in changes.items():
            rows[key].update(values)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
        return path

    write()
    return write


class World:
    def __init__(self, kb, store, objects, container):
        self.kb, self.store, self.objects, self.container = kb, store, objects, container

    def sync(self):
        """The four sync steps, as sync_job runs them."""
        c = self.kb.get_container(self.container.id)
        source = open_source(c.source_kind, c.source_location, fields=c.declared_fields)
        documents = sync_documents(self.kb, self.objects, c, source)
        chunk_documents(self.kb, c)
        embed_chunks(self.kb, c, load_embedder, c.embedder_version)
        return documents, sync_collection(self.kb, self.store, c)

    @property
    def collection(self) -> str:
        return self.kb.live_generation(self.container.id).collection

    def payloads(self) -> dict[str, list[dict]]:
        """Source key -> the fields of each of its points."""
        found: dict[str, list[dict]] = {}
        for point in self.store.scroll(self.collection, with_payload=True):
            found.setdefault(point.payload["source_key"], []).append(point.payload["fields"])
        return found


@pytest.fixture
def world(kb, any_store, records, tmp_path, monkeypatch):
    calls = spy_field_indexes(monkeypatch, any_store)
    container = kb.add_container("teams", "jsonl", str(records()), "hash-256@1", declared_fields=("lang", "team"))
    w = World(kb, any_store, FolderObjectStore(tmp_path / "objects"), container)
    w.index_calls = calls
    return w


def test_a_change_of_fields_alone_rewrites_the_points_of_that_document(world, records):
    _, first = world.sync()
    assert first.upserted == first.points == 4  # a has two chunks
    assert world.payloads() == {
        "a": [{"lang": "en", "team": "fruit"}] * 2,
        "b": [{"lang": "en", "team": "wheels"}],
        "c": [{"lang": "fr", "team": "ice"}],
    }
    assert world.index_calls == [(world.collection, "fields.lang"), (world.collection, "fields.team")]
    ids = world.store.point_ids(world.collection)

    records(a={"team": "orchard"})
    documents, second = world.sync()
    assert (documents.updated, documents.skipped) == (0, 3)  # the text is the same: skipped, its fields written
    assert (second.upserted, second.deleted) == (2, 0)  # both points of a, and no other
    assert world.store.point_ids(world.collection) == ids
    assert world.payloads()["a"] == [{"lang": "en", "team": "orchard"}] * 2
    assert world.sync()[1].upserted == 0  # up to date: nothing written again

    vector = load_embedder("hash-256@1").embed_queries(["apples"])[0]
    hits = world.store.search(world.collection, vector, limit=5, where={"fields.team": "orchard"})
    assert {h.payload["source_key"] for h in hits} == {"a"}
    both = {"fields.lang": "fr", "fields.team": "orchard"}
    assert world.store.search(world.collection, vector, limit=5, where=both) == []


def test_a_fill_that_dies_leaves_the_fields_to_the_next(world, records, monkeypatch):
    world.sync()
    records(b={"lang": "de"}, c={"text": "Glaciers carve valleys and fjords.", "lang": "de"})
    store_type = type(world.store)
    original = store_type.upsert
    monkeypatch.setattr(store_type, "upsert", lambda *args: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError, match="killed"):
        world.sync()
    monkeypatch.setattr(store_type, "upsert", original)
    assert world.payloads()["b"] == [{"lang": "en", "team": "wheels"}]

    filled = fill_collection(world.kb, world.store, world.container, world.collection, "hash-256@1")
    assert (filled.upserted, filled.deleted) == (2, 1)  # b rewritten, c's new chunk written and its old one gone
    assert world.payloads() == {
        "a": [{"lang": "en", "team": "fruit"}] * 2,
        "b": [{"lang": "de", "team": "wheels"}],
        "c": [{"lang": "de", "team": "ice"}],
    }
    revision = world.kb.fields_revision(world.container.id)
    assert revision > 0 and world.kb.collection_fields_revision(world.container.id, world.collection) == revision


def test_a_shadow_and_an_in_place_build_carry_the_fields(world, records):
    from ops_pipelines.refresh import build_generation

    world.sync()
    records(a={"team": "orchard"})
    world.sync()
    shadow = build_generation(world.kb, world.store, world.kb.get_container("teams"), "hash-256@1")
    points = world.store.scroll(shadow.generation.collection, with_payload=True)
    payloads = {p.payload["source_key"]: p.payload["fields"] for p in points}
    assert payloads["a"] == {"lang": "en", "team": "orchard"}
    assert (shadow.generation.collection, "fields.team") in world.index_calls
    in_place = build_generation(world.kb, world.store, world.kb.get_container("teams"), "hash-256@1", mode="in_place")
    assert in_place.upserted == 4
