"""Document fields in the metadata DB, and the revision that says which points carry stale ones.

A document's fields (``documents.fields``) are a JSON object of strings, keys sorted. A change of
fields alone (a Redmine issue's assignee) leaves the chunk texts, so the point ids, as they were:
reconciling by id would never rewrite those points. So every write that changes the fields of
documents that exist already bumps the container's ``fields_revision`` and stamps those documents
with it, in the same transaction; each generation records the revision its points' fields are up
to (``generations.fields_revision``), and filling it writes again the points of the documents
stamped above that (``ingest.collection``). A counter, not a clock: nothing depends on two
machines agreeing on the time, and a fill that dies records nothing, so the next one does it all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy import Connection, select, update
from sqlalchemy.engine import Engine

from ops_pipelines.kb import schema


def dumps(fields: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(fields.items())), ensure_ascii=False, separators=(",", ":"))


def loads(text: str | None) -> dict[str, str] | None:
    """The fields of a ``documents.fields`` value; None for NULL (not known yet)."""
    return None if text is None else json.loads(text)


def names_dumps(names: tuple[str, ...]) -> str | None:
    return json.dumps(list(names)) if names else None


def names_loads(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


def bump(conn: Connection, container_id: str) -> int:
    """The container's next fields revision, taken inside the caller's transaction."""
    c = schema.containers.c
    conn.execute(
        update(schema.containers).where(c.id == container_id).values(fields_revision=c.fields_revision + 1)
    )
    return conn.execute(select(c.fields_revision).where(c.id == container_id)).scalar_one()


class FieldRecords:
    """Mixed into ``KnowledgeBase``."""

    engine: Engine

    def fields_revision(self, container_id: str) -> int:
        c = schema.containers.c
        with self.engine.connect() as conn:
            return conn.execute(select(c.fields_revision).where(c.id == container_id)).scalar_one()

    def collection_fields_revision(self, container_id: str, collection: str) -> int:
        """The revision the fields of ``collection``'s points are up to (0: every change since
        the container was made is to be written; a collection no generation records has 0)."""
        g = schema.generations.c
        with self.engine.connect() as conn:
            found = conn.execute(
                select(g.fields_revision).where(g.container_id == container_id, g.collection == collection)
            ).scalar()
        return found or 0

    def record_collection_fields(self, container_id: str, collection: str, revision: int) -> None:
        g = schema.generations.c
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.generations)
                .where(g.container_id == container_id, g.collection == collection)
                .values(fields_revision=revision)
            )

    def update_document_fields(self, container_id: str, fields: Mapping[str, Mapping[str, str]]) -> None:
        """Document id -> its new fields, nothing else of it changed; one transaction."""
        if not fields:
            return
        d = schema.documents
        with self.engine.begin() as conn:
            revision = bump(conn, container_id)
            for doc_id, values in fields.items():
                conn.execute(
                    update(d).where(d.c.id == doc_id).values(fields=dumps(values), fields_revision=revision)
                )
