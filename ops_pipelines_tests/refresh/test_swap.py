"""Swap, rollback and retention on the core functions, on both vector store backends: the alias
swap is the metadata DB's record on Qdrant Edge, a real alias on a server."""

from __future__ import annotations

import numpy as np
import pytest

from ops_pipelines.kb import GenerationNotFound, KnowledgeBase
from ops_pipelines.refresh import NothingToRollBack, prune_generations, rollback, swap_to
from ops_pipelines.vectors.serving import serving_collection


@pytest.fixture
def world(sqlite_url, any_store):
    """A container with four generations g1..g4 (g4 live), each a one-point collection."""
    kb = KnowledgeBase(sqlite_url)
    container = kb.add_container("docs", "folder", "/srv", "hash-256@1")
    store = any_store
    for n in range(1, 5):
        state = "live" if n == 1 else "building"
        gen, _ = kb.open_generation(container.id, "hash-256@1", lambda k: f"kb_docs__g{k}", state=state)
        store.ensure_collection(gen.collection, 4)
        store.upsert(gen.collection, [f"00000000-0000-0000-0000-00000000000{n}"], np.eye(4)[:1], [{}])
        swap_to(kb, store, kb.get_container("docs"), kb.generation(container.id, gen.number), retention=None)
    yield kb, store, kb.get_container("docs")
    kb.close()


def serving(kb, store):
    return serving_collection(kb, store, kb.get_container("docs"))


def states(kb, container):
    return [(g.number, g.state) for g in kb.generations(container.id)]


def test_retention_keeps_the_live_and_last_served_generations(world):
    kb, store, container = world
    dropped = prune_generations(kb, store, container, retention=2)
    assert dropped == ["kb_docs__g2", "kb_docs__g1"]
    assert states(kb, container) == [(1, "dropped"), (2, "dropped"), (3, "retired"), (4, "live")]
    assert store.collection_dimension("kb_docs__g1") is None
    with pytest.raises(ValueError, match="retention >= 1"):
        prune_generations(kb, store, container, retention=0)


def test_rollback_goes_to_the_generation_served_last_and_can_roll_forward(world):
    kb, store, container = world
    rollback(kb, store, container, to_generation=1)
    assert serving(kb, store) == "kb_docs__g1"
    report = rollback(kb, store, container)  # default: the one live before, g4
    assert (report.live.number, report.previous.number) == (4, 1)
    assert serving(kb, store) == "kb_docs__g4"
    assert kb.get_container("docs").active_generation == 4


# Embedded, the recorded live generation is the alias: nobody can move it by hand.
@pytest.mark.parametrize("store_backend", ["server"])
def test_retention_never_drops_what_the_alias_serves(world):
    kb, store, container = world
    store.point_alias("kb_docs", "kb_docs__g1")  # someone moved the alias by hand
    dropped = prune_generations(kb, store, container, retention=1)
    assert "kb_docs__g1" not in dropped and store.collection_dimension("kb_docs__g1") == 4


def test_rollback_and_swap_refuse_generations_that_are_gone(world):
    kb, store, container = world
    prune_generations(kb, store, container, retention=1)
    with pytest.raises(NothingToRollBack, match="no retired generation"):
        rollback(kb, store, container)
    with pytest.raises(NothingToRollBack, match="cannot roll back to generation 2"):
        rollback(kb, store, container, to_generation=2)
    store.drop_collection("kb_docs__g4")
    with pytest.raises(GenerationNotFound, match="does not exist in Qdrant"):
        swap_to(kb, store, container, kb.generation(container.id, 4))
