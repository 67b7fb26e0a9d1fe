"""Schema upgrades from what an older version left (both backends): 6 keys chunks by chunker, 8 adds
the least search score and the quality bounds."""

from __future__ import annotations

from sqlalchemy import create_engine, insert, inspect, select

from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.kb import KnowledgeBase, schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.kb.migrations import LATEST, MIGRATIONS

V5_CHUNKS = """CREATE TABLE chunks (
    document_id VARCHAR(36) NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    content_hash VARCHAR(64) NOT NULL,
    PRIMARY KEY (document_id, ordinal)
)"""


def _schema_5(url: str) -> None:
    """The tables as schema 5 had them: chunks without a chunker, documents with chunked_hash."""
    engine = create_engine(url)
    with engine.begin() as conn:
        schema.schema_version.create(conn)
        for migration in MIGRATIONS[:5]:
            migration(conn)
        conn.exec_driver_sql("DROP TABLE chunks")
        conn.exec_driver_sql(V5_CHUNKS)
        conn.exec_driver_sql("CREATE INDEX ix_chunks_content_hash ON chunks (content_hash)")
        conn.exec_driver_sql("ALTER TABLE documents ADD COLUMN chunked_hash VARCHAR(64)")
        conn.execute(insert(schema.schema_version).values(version=5))
        now = utcnow()
        conn.execute(insert(schema.containers).values(
            id="c1", slug="docs", source_kind="folder", source_location="/x", embedder_version="hash-256@1",
            created_at=now,
        ))
        documents = [("d1", "a.md", "h1", "h1"), ("d2", "b.md", "h2", "old"), ("d3", "c.md", "h3", None)]
        for doc_id, key, content_hash, chunked in documents:
            conn.exec_driver_sql(
                "INSERT INTO documents (id, container_id, source_key, title, uri, raw_sha256, source_hash, content_hash,"
                " text, status, chunked_hash, created_at, updated_at) VALUES"
                f" ('{doc_id}', 'c1', '{key}', 't', 'u', 'r', 's', '{content_hash}', 'text', 'active',"
                f" {'NULL' if chunked is None else repr(chunked)}, '{now.isoformat()}', '{now.isoformat()}')"
            )
        conn.exec_driver_sql(
            "INSERT INTO chunks (document_id, ordinal, text, content_hash) VALUES"
            " ('d1', 0, 'one', 'x1'), ('d1', 1, 'two', 'x2'), ('d2', 0, 'three', 'x3')"
        )
    engine.dispose()


def test_schema_6_keys_every_existing_chunk_by_the_paragraph_chunker(kb_url):
    _schema_5(kb_url)
    kb = KnowledgeBase(kb_url)
    try:
        with kb.engine.connect() as conn:
            assert conn.execute(select(schema.schema_version.c.version)).scalar_one() == LATEST >= 6
            sets = conn.execute(select(schema.chunk_sets.c.document_id, schema.chunk_sets.c.chunker)).all()
        assert sorted(sets) == [("d1", PARA), ("d2", PARA)]
        assert "chunked_hash" not in {c["name"] for c in inspect(kb.engine).get_columns("documents")}
        assert [r.text for r in kb.active_chunks("c1", PARA)] == ["one", "two", "three"]
        assert kb.count_active_chunks("c1", "minilm-tokens-254@1") == 0
        # d2's chunks were cut from older content, d3 was never chunked: both are cut again
        assert [[doc for doc, _, _ in page] for page in kb.documents_to_chunk("c1", PARA)] == [["d2", "d3"]]
        assert [doc for page in kb.documents_to_chunk("c1", "minilm-tokens-254@1") for doc, _, _ in page] == ["d1", "d2", "d3"]
        kb.replace_chunks("minilm-tokens-254@1", [("d1", "h1", [("y1", "one two")])])
        assert [r.text for r in kb.active_chunks("c1", PARA)] == ["one", "two", "three"]  # untouched
        assert [r.text for r in kb.active_chunks("c1", "minilm-tokens-254@1")] == ["one two"]
    finally:
        kb.close()


def test_schema_8_adds_the_least_score_and_the_quality_bounds(kb_url):
    from ops_pipelines.kb.golden_sets import QualityBounds

    engine = create_engine(kb_url)
    with engine.begin() as conn:
        schema.schema_version.create(conn)
        for migration in MIGRATIONS[:7]:
            migration(conn)
        conn.exec_driver_sql("ALTER TABLE generations DROP COLUMN min_score")  # as schema 7 had it
        conn.execute(insert(schema.schema_version).values(version=7))
        conn.execute(insert(schema.containers).values(
            id="c1", slug="docs", source_kind="folder", source_location="/x", embedder_version="hash-256@1",
            created_at=utcnow(),
        ))
        conn.exec_driver_sql(
            "INSERT INTO generations (container_id, number, embedder_version, collection, state, created_at) VALUES"
            f" ('c1', 1, 'hash-256@1', 'kb_docs__hash-256-1__g1', 'live', '{utcnow().isoformat()}')"
        )
    engine.dispose()
    kb = KnowledgeBase(kb_url)
    try:
        (generation,) = kb.generations("c1")
        assert generation.min_score is None and kb.quality_bounds("c1") == QualityBounds()
        kb.set_min_score("c1", 1, 0.25)
        kb.set_quality_bounds("c1", QualityBounds(tolerance=0.05))
        assert kb.generation("c1", 1).min_score == 0.25
        assert kb.quality_bounds("c1") == QualityBounds(tolerance=0.05, floor=None)
        kb.set_quality_bounds("c1", QualityBounds())
        assert kb.quality_bounds("c1") == QualityBounds()
    finally:
        kb.close()


# What schema 9 adds; v1 and v2 create today's tables, so a schema 8 database is made without them.
V9_COLUMNS = {
    "containers": ["declared_fields", "fields_revision"],
    "documents": ["fields", "fields_revision"],
    "generations": ["fields_revision"],
}


def _schema_8(url: str) -> None:
    """A knowledge base schema 8 left: one container, a document, a live generation."""
    engine = create_engine(url)
    with engine.begin() as conn:
        schema.schema_version.create(conn)
        for migration in MIGRATIONS[:8]:
            migration(conn)
        for table, columns in V9_COLUMNS.items():
            for column in columns:
                conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.execute(insert(schema.schema_version).values(version=8))
        now = utcnow().isoformat()
        conn.exec_driver_sql(
            "INSERT INTO containers (id, slug, source_kind, source_location, embedder_version, active_generation,"
            f" created_at, state) VALUES ('c1', 'ops', 'redmine', 'x', 'hash-256@1', 1, '{now}', 'ready')"
        )
        conn.exec_driver_sql(
            "INSERT INTO documents (id, container_id, source_key, title, uri, raw_sha256, source_hash, content_hash,"
            f" text, status, source_updated_at, created_at, updated_at) VALUES ('d1', 'c1', 'issues/1', 't', 'u', 'r',"
            f" 's', 'h', 'text', 'active', '{now}', '{now}', '{now}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO generations (container_id, number, embedder_version, collection, state, created_at)"
            f" VALUES ('c1', 1, 'hash-256@1', 'kb_ops__hash-256-1__g1', 'live', '{now}')"
        )
    engine.dispose()


def test_schema_9_adds_fields_and_leaves_those_of_existing_documents_unknown(kb_url):
    _schema_8(kb_url)
    kb = KnowledgeBase(kb_url)
    try:
        with kb.engine.connect() as conn:
            assert conn.execute(select(schema.schema_version.c.version)).scalar_one() == LATEST >= 9
        for table, columns in V9_COLUMNS.items():
            assert set(columns) <= {c["name"] for c in inspect(kb.engine).get_columns(table)}
        container = kb.get_container("ops")
        assert container.declared_fields == () and kb.fields_revision("c1") == 0
        assert kb.document_states("c1")["issues/1"].fields is None  # not known yet
        assert kb.document_updated_at("c1") == {}  # so a remote source reads it again
        assert kb.live_generation("c1").fields_revision == 0
        assert kb.collection_fields_revision("c1", "kb_ops__hash-256-1__g1") == 0

        kb.update_document_fields("c1", {"d1": {"status": "New"}})
        assert kb.document_states("c1")["issues/1"].fields == {"status": "New"} and kb.fields_revision("c1") == 1
        assert set(kb.document_updated_at("c1")) == {"issues/1"}
        added = kb.add_container("teams", "jsonl", "/x.jsonl", "hash-256@1", declared_fields=("lang", "team"))
        assert kb.get_container(added.id).declared_fields == ("lang", "team")
    finally:
        kb.close()


def test_processes_opening_a_new_database_at_once_migrate_it_in_turn(kb_url):
    """The CLI, the daemon's sensors and the run workers all open the knowledge base; on a new
    database their first migrations meet. One at a time: none fails creating ``schema_version``."""
    import threading

    opened, errors = [], []
    start = threading.Barrier(8)

    def open_it():
        start.wait()
        try:
            opened.append(KnowledgeBase(kb_url))
        except Exception as exc:  # noqa: BLE001 - collected and asserted on
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for kb in opened:
        kb.close()
    assert errors == []
    kb = KnowledgeBase(kb_url)
    try:
        with kb.engine.connect() as conn:
            assert conn.execute(select(schema.schema_version.c.version)).scalars().all() == [LATEST]
    finally:
        kb.close()
