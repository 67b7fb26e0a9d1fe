"""Schema 6: chunks keyed by chunker, from a knowledge base schema 5 left (both backends)."""

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
