"""``ops-pipelines container remove``: a container and everything of it goes, never a collection that
another container's generation record names, and never a container that serves searches unless
the operator says so."""

from __future__ import annotations

from dagster import DagsterInstance
from sqlalchemy import insert

from ops_pipelines.kb import KnowledgeBase, schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.vectors import open_vector_store
from ops_pipelines_tests.cli.test_commands import run


def collections(home) -> set[str]:
    with open_vector_store(path=str(home / "qdrant")) as store:
        return set(store.collection_names())


def test_a_serving_container_is_removed_only_with_force(home, corpus):
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    run("sync", "kb1")
    assert collections(home) == {"kb_kb1__hash-256-1__g1"}

    code, out = run("container", "remove", "kb1")
    assert code == 1
    assert out.splitlines()[-1] == (
        "Error: container 'kb1' serves searches (kb_kb1 -> kb_kb1__hash-256-1__g1): removing it drops its "
        "collections and its searches fail. Run it again with --force to remove it anyway"
    )
    assert collections(home) == {"kb_kb1__hash-256-1__g1"}
    code, out = run("search", "kb1", "glaciers and mountain valleys", "--limit", "1")
    assert code == 0 and out.splitlines()[0].endswith("[gamma.md]")

    code, out = run("container", "remove", "kb1", "--force")
    assert code == 0, out
    assert out.splitlines() == [
        "removed container kb1 (ready): its records, partition and 1 collection(s): kb_kb1__hash-256-1__g1",
    ]
    assert collections(home) == set()
    assert not DagsterInstance.get().has_dynamic_partition("containers", "kb1")
    code, out = run("container", "list")
    assert "no containers" in out
    code, out = run("container", "remove", "kb1")
    assert code == 1 and "container 'kb1' does not exist" in out


def test_a_container_not_serving_is_removed_and_its_slug_can_be_used_again(home, corpus):
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    code, out = run("container", "remove", "kb1")
    assert code == 0 and out.startswith("removed container kb1 (ready): its records, partition and 0 collection(s)")
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    code, out = run("sync", "kb1")
    assert code == 0, out


def test_a_collection_another_container_records_is_kept(home, corpus):
    """What the import of old left: two containers' records naming one collection."""
    for slug in ("kb1", "kb2"):
        run("container", "add", "--slug", slug, "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    run("sync", "kb1")
    kb = KnowledgeBase(f"sqlite:///{home / 'kb.sqlite'}")
    try:
        kb2 = kb.get_container("kb2")
        with kb.engine.begin() as conn:
            conn.execute(
                insert(schema.generations).values(
                    container_id=kb2.id, number=1, embedder_version="hash-256@1", collection="kb_kb1__hash-256-1__g1",
                    state="retired", created_at=utcnow(),
                )
            )
    finally:
        kb.close()
    code, out = run("container", "remove", "kb2")
    assert code == 0, out
    assert out.splitlines() == [
        "removed container kb2 (ready): its records, partition and 0 collection(s)",
        "  kept kb_kb1__hash-256-1__g1: another container's generation records name it",
    ]
    assert collections(home) == {"kb_kb1__hash-256-1__g1"}
    code, out = run("search", "kb1", "glaciers and mountain valleys", "--limit", "1")
    assert code == 0 and out.splitlines()[0].endswith("[gamma.md]")
