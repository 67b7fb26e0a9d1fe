"""Containers an import is writing or has parked: listed only where asked for, kept by maintenance,
removed with their collections but never with one another container records."""

from __future__ import annotations

from sqlalchemy import insert

from ops_pipelines.containers import drop_container, remove_container
from ops_pipelines.kb import IMPORTING, PARKED, schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.maintenance import drop_orphan_collections
from ops_pipelines.vectors import open_vector_store


def _name(slug: str, n: int) -> str:
    return f"kb_{slug}__hash-256-1__g{n}"


def test_an_imports_containers_are_listed_only_when_asked_and_their_collections_are_no_orphans(kb, tmp_path):
    with open_vector_store(path=str(tmp_path / "qdrant")) as store:
        ready = kb.add_container("docs", "folder", "/srv", "hash-256@1")
        importing = kb.add_container("docs-importing-1", "folder", "/srv", "hash-256@1", state=IMPORTING, import_slug="docs")
        for container in (ready, importing):
            generation, _ = kb.open_generation(container.id, "hash-256@1", lambda n: _name("docs", n))
            store.ensure_collection(generation.collection, 256)
        assert [c.slug for c in kb.list_containers()] == ["docs"]  # what sensors, health, backups see
        assert [(c.slug, c.state) for c in kb.list_containers(every_state=True)] == [
            ("docs", "ready"), ("docs-importing-1", "importing"),
        ]
        assert drop_orphan_collections(kb, store).collections == ()
        assert set(store.collection_names()) == {_name("docs", 1), _name("docs", 2)}

        removal = drop_container(kb, store, kb.get_container(importing.id))
        assert removal.dropped == [_name("docs", 2)]
        assert set(store.collection_names()) == {_name("docs", 1)}


def test_removing_a_parked_container_keeps_what_another_container_records(kb, tmp_path):
    with open_vector_store(path=str(tmp_path / "qdrant")) as store:
        parked = kb.add_container("docs-replaced-1", "folder", "/srv", "hash-256@1", state=PARKED, import_slug="docs")
        other = kb.add_container("docs", "folder", "/srv", "hash-256@1")
        rows = [(parked, 1, _name("docs", 1)), (parked, 2, _name("docs", 2)), (other, 1, _name("docs", 1))]
        with kb.engine.begin() as conn:  # two records naming one collection: what the import of old could leave
            conn.execute(
                insert(schema.generations),
                [
                    dict(container_id=c.id, number=n, embedder_version="hash-256@1", collection=name,
                         state="retired", created_at=utcnow())
                    for c, n, name in rows
                ],
            )
        for _, _, name in rows:
            store.ensure_collection(name, 256)
        removal = remove_container(kb, store, "docs-replaced-1", "test")
        assert removal.dropped == [_name("docs", 2)]
        assert removal.kept == {_name("docs", 1): "another container's generation records name it"}
        assert set(store.collection_names()) == {_name("docs", 1)}
        assert [c.slug for c in kb.list_containers(every_state=True)] == ["docs"]
