"""Generation records on SQLite and PostgreSQL, and the schema-2 migration of existing data."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, insert, select

from ops_pipelines.kb import IMPORTING, PARKED, GenerationNotFound, KnowledgeBase, schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.kb.migrations import MIGRATIONS


def _name(n: int) -> str:
    return f"kb_docs__v__g{n}"


def test_building_generations_are_resumed_and_numbered_after_every_other(kb):
    c = kb.add_container("docs", "folder", "/srv", "hash-256@1")
    live, created = kb.open_generation(c.id, "hash-256@1", _name, state="live")
    assert created and (live.number, live.state) == (1, "live")
    assert kb.get_container("docs").active_generation == 1

    shadow, created = kb.open_generation(c.id, "hash-256@2", _name)
    assert created and (shadow.number, shadow.state, shadow.collection) == (2, "building", _name(2))
    again, created = kb.open_generation(c.id, "hash-256@2", _name)
    assert not created and again.number == 2  # a second run resumes the unfinished shadow
    other, _ = kb.open_generation(c.id, "hash-64@1", _name)
    assert other.number == 3


def test_a_collection_name_another_container_records_is_never_given_again(kb):
    """A slug can change hands (an import parks the container it replaces; a container is removed
    and another added): a new generation is numbered past every name any generation record holds."""
    old = kb.add_container("docs", "folder", "/srv", "hash-256@1")
    kb.open_generation(old.id, "hash-256@1", _name, state="live")
    kb.open_generation(old.id, "hash-256@1", _name)
    new = kb.add_container("docs-importing", "folder", "/srv", "hash-256@1", state=IMPORTING, import_slug="docs")
    live, _ = kb.open_generation(new.id, "hash-256@1", _name, state="live")
    parked = kb.complete_import(new.id, old.id)
    assert (parked.state, kb.get_container("docs").id) == (PARKED, new.id)
    shadow, _ = kb.open_generation(new.id, "hash-64@1", _name)
    assert (live.number, live.collection, shadow.number) == (3, _name(3), 4)
    names = [g.collection for c in (old, new) for g in kb.generations(c.id)]
    assert len(names) == len(set(names)) == 4
    left_in_qdrant = {_name(5)}  # a collection no record names: not taken over either
    other, _ = kb.open_generation(new.id, "hash-256@2", _name, exists=left_in_qdrant.__contains__)
    assert other.number == 6


def test_activation_retires_the_live_one_and_moves_the_container(kb):
    c = kb.add_container("docs", "folder", "/srv", "hash-256@1")
    kb.open_generation(c.id, "hash-256@1", _name, state="live")
    shadow, _ = kb.open_generation(c.id, "hash-64@1", _name)
    previous = kb.activate_generation(c.id, shadow.number)
    assert previous.number == 1
    assert [(g.number, g.state) for g in kb.generations(c.id)] == [(1, "retired"), (2, "live")]
    container = kb.get_container("docs")
    assert (container.active_generation, container.embedder_version) == (2, "hash-64@1")
    assert kb.activate_generation(c.id, 2) is None  # already live: nothing changes

    kb.mark_generation_dropped(c.id, 2)  # the live generation is never marked dropped
    kb.mark_generation_dropped(c.id, 1)
    assert [(g.number, g.state) for g in kb.generations(c.id)] == [(1, "dropped"), (2, "live")]
    with pytest.raises(GenerationNotFound, match="dropped by retention"):
        kb.activate_generation(c.id, 1)
    with pytest.raises(GenerationNotFound):
        kb.generation(c.id, 9)


def test_retarget_changes_the_live_generation_and_container_version(kb):
    c = kb.add_container("docs", "folder", "/srv", "hash-256@1")
    kb.open_generation(c.id, "hash-256@1", _name, state="live")
    kb.retarget_live_generation(c.id, "hash-256@2")
    assert kb.live_generation(c.id).embedder_version == "hash-256@2"
    assert kb.get_container("docs").embedder_version == "hash-256@2"


def test_schema_2_records_the_live_collection_of_existing_containers(sqlite_url):
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:  # a knowledge base as schema version 1 left it
        schema.schema_version.create(conn)
        MIGRATIONS[0](conn)
        conn.execute(insert(schema.schema_version).values(version=1))
        conn.execute(
            insert(schema.containers),
            [
                dict(id="c1", slug="docs", source_kind="folder", source_location="/x",
                     embedder_version="minilm-l6-v2@1", active_generation=1, created_at=utcnow()),
                dict(id="c2", slug="never-synced", source_kind="folder", source_location="/y",
                     embedder_version="hash-256@1", active_generation=None, created_at=utcnow()),
            ],
        )
    engine.dispose()
    kb = KnowledgeBase(sqlite_url)
    try:
        (live,) = kb.generations("c1")
        assert (live.number, live.state, live.collection) == (1, "live", "kb_docs__minilm-l6-v2-1__g1")
        assert kb.generations("c2") == []
        with kb.engine.connect() as conn:
            assert conn.execute(select(schema.schema_version.c.version)).scalar_one() == len(MIGRATIONS)
    finally:
        kb.close()
