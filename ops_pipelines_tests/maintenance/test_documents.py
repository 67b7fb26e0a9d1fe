"""Purging archived documents: archived by real syncs, aged in the database, purged with their blobs."""

from __future__ import annotations

import shutil
from datetime import timedelta

from sqlalchemy import func, select, update

from ops_pipelines.kb import schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.maintenance import purge_archived_documents
from ops_pipelines.objects import blob_key
from ops_pipelines_tests.maintenance.conftest import objects_of


def documents(kb, slug: str) -> dict[str, tuple[str, str, str]]:
    """source key -> (id, status, raw sha256)."""
    d = schema.documents.c
    with kb.engine.connect() as conn:
        rows = conn.execute(
            select(d.source_key, d.id, d.status, d.raw_sha256).where(d.container_id == kb.get_container(slug).id)
        )
        return {r.source_key: (r.id, r.status, r.raw_sha256) for r in rows}


def chunk_count(kb, document_ids) -> int:
    ch = schema.chunks.c
    with kb.engine.connect() as conn:
        return conn.execute(select(func.count()).where(ch.document_id.in_(list(document_ids)))).scalar_one()


def chunks_without_document(kb) -> int:
    ch, d = schema.chunks.c, schema.documents.c
    with kb.engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(schema.chunks.outerjoin(schema.documents, ch.document_id == d.id))
            .where(d.id.is_(None))
        ).scalar_one()


def test_old_archived_documents_are_purged_with_the_blobs_nothing_else_uses(synced, kb_of, corpus, tmp_path):
    objects = objects_of(synced)
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(corpus / "beta.md", shared / "beta.md")  # the same bytes: the same blob
    (shared / "zeta.md").write_text("# Zeta\n\nZeta is the last letter.")
    synced.add_container("shared", shared)
    synced.sync("shared")
    (corpus / "alpha.md").unlink()
    (corpus / "beta.md").unlink()
    synced.sync("docs")  # archives alpha and beta
    (corpus / "gamma.md").unlink()
    synced.sync("docs")  # archives gamma: recently, so it stays

    before = documents(kb_of, "docs")
    old = [before["alpha.md"][0], before["beta.md"][0]]
    d = schema.documents.c
    with kb_of.engine.begin() as conn:
        conn.execute(update(schema.documents).where(d.id.in_(old)).values(archived_at=utcnow() - timedelta(days=40)))
    old_chunks = chunk_count(kb_of, old)
    alpha_blob, beta_blob, gamma_blob = (blob_key(before[k][2]) for k in ("alpha.md", "beta.md", "gamma.md"))
    assert old_chunks > 0 and before["gamma.md"][1] == "archived"

    dry = purge_archived_documents(kb_of, objects, older_than=timedelta(days=30), dry_run=True)
    assert (dry.documents, dry.blobs_deleted) == (2, 1)
    assert documents(kb_of, "docs") == before and objects.exists(alpha_blob)

    report = purge_archived_documents(kb_of, objects, older_than=timedelta(days=30))
    assert report.table.to_dict("records") == [{"container": "docs", "documents": 2, "chunks": old_chunks, "blobs": 1}]
    assert report.blobs_deleted == 1
    after = documents(kb_of, "docs")
    assert sorted(after) == ["delta.md", "gamma.md", "notes/epsilon.txt"]
    assert chunk_count(kb_of, old) == 0 and chunks_without_document(kb_of) == 0  # ON DELETE CASCADE ran
    assert not objects.exists(alpha_blob)
    assert objects.exists(beta_blob)  # container "shared" still has beta.md
    assert objects.exists(gamma_blob)  # archived too recently
    assert documents(kb_of, "shared")["beta.md"][1] == "active"

    again = purge_archived_documents(kb_of, objects, older_than=timedelta(days=30))
    assert (again.documents, again.blobs_deleted, again.containers) == (0, 0, ())
    later = purge_archived_documents(kb_of, objects, older_than=timedelta(days=30), now=utcnow() + timedelta(days=31))
    assert later.documents == 1 and not objects.exists(gamma_blob)
