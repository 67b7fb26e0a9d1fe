"""The knowledge-base store: containers, documents, chunks and the embedding cache.

Every write that touches a document goes through one transaction per batch, so a run that dies
leaves each document either in its old or in its new state, never half-written.
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import create_engine, delete, event, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url

from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import fields as document_fields
from ops_pipelines.kb import schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.kb.fields import FieldRecords
from ops_pipelines.kb.generations import GenerationRecords
from ops_pipelines.kb.golden_sets import GoldenSetRecords
from ops_pipelines.kb.leases import LeaseRecords
from ops_pipelines.kb.migrations import migrate
from ops_pipelines.kb.snapshot import container_snapshot
from ops_pipelines.kb.source_state import SourceStateRecords, as_utc
from ops_pipelines.kb.streams import ChunkStreams

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# A container's states: in service; being written by an import under a temporary slug; replaced
# by an import and on its way out. Only ready ones are listed to the operations.
READY, IMPORTING, PARKED = "ready", "importing", "parked"


class ContainerNotFound(OperatorError, LookupError):
    pass


class ContainerExists(OperatorError, ValueError):
    pass


@dataclass(frozen=True)
class Container:
    id: str
    slug: str
    source_kind: str
    source_location: str
    embedder_version: str
    active_generation: int | None
    last_synced_at: datetime | None
    state: str = READY
    import_slug: str | None = None  # importing: the slug it takes when done; parked: the slug it gave up
    declared_fields: tuple[str, ...] = ()  # the record fields declared for its documents (JSONL)


@dataclass(frozen=True)
class DocumentState:
    id: str
    source_hash: str
    content_hash: str
    status: str
    source_updated_at: datetime | None = None
    fields: dict[str, str] | None = None  # None: not known yet (synced before schema 9)


@dataclass(frozen=True)
class DocumentWrite:
    """A new or changed document, as the source gave it."""

    source_key: str
    title: str
    uri: str
    raw_sha256: str
    source_hash: str
    content_hash: str
    text: str
    source_updated_at: datetime | None
    fields: Mapping[str, str] | None = field(default_factory=dict)  # None: not known (an old archive's)


@dataclass(frozen=True)
class ChunkRow:
    document_id: str
    ordinal: int
    content_hash: str
    text: str
    source_key: str
    title: str
    uri: str
    fields: Mapping[str, str] = field(default_factory=dict)


class KnowledgeBaseBusy(OperatorError, RuntimeError):
    """An embedded (SQLite) knowledge base stayed locked by another writer past the busy timeout."""


_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite statement waits for another writer's lock


def _write_ahead_log(cursor, timeout_ms: int) -> None:
    """WAL mode. Turning a new database to it takes a lock for which SQLite does not wait (the
    busy timeout does not apply): processes opening a new knowledge base at once (the daemon, the
    webserver, a command) try again until the timeout."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3; we ship psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed)
        timeout = _BUSY_TIMEOUT_MS

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={timeout}")
            _write_ahead_log(cur, timeout)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "handle_error")
        def _locked(context):
            if "database is locked" in str(context.original_exception):
                raise KnowledgeBaseBusy(
                    f"the knowledge base {parsed.database} stayed locked by another writer for {timeout / 1000:g} s "
                    "(a restore, an import or a sync writing a large batch): run this again once it has ended; "
                    "`ops-pipelines health` names a run that stopped while holding the knowledge base"
                ) from context.original_exception

        return engine
    return create_engine(parsed, pool_pre_ping=True)


class KnowledgeBase(GenerationRecords, GoldenSetRecords, LeaseRecords, SourceStateRecords, ChunkStreams, FieldRecords):
    def __init__(self, url: str):
        self.url = url
        self.engine = _engine(url)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- containers -------------------------------------------------------------------------

    def add_container(
        self,
        slug: str,
        source_kind: str,
        source_location: str,
        embedder_version: str,
        *,
        container_id: str | None = None,
        state: str = READY,
        import_slug: str | None = None,
        declared_fields: Sequence[str] = (),
    ) -> Container:
        if not SLUG_PATTERN.match(slug):
            raise ValueError(
                f"invalid container slug {slug!r}: use lowercase letters, digits and '-', "
                "starting with a letter or digit, at most 63 characters"
            )
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(schema.containers.c.id).where(schema.containers.c.slug == slug)
            ).first()
            if exists:
                raise ContainerExists(f"container {slug!r} already exists")
            conn.execute(
                insert(schema.containers).values(
                    id=container_id or str(uuid.uuid4()),
                    slug=slug,
                    source_kind=source_kind,
                    source_location=source_location,
                    embedder_version=embedder_version,
                    created_at=utcnow(),
                    state=state,
                    import_slug=import_slug,
                    declared_fields=document_fields.names_dumps(tuple(declared_fields)),
                )
            )
        return self.get_container(slug)

    def get_container(self, slug_or_id: str) -> Container:
        c = schema.containers.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.containers).where(or_(c.slug == slug_or_id, c.id == slug_or_id))
            ).first()
        if row is None:
            raise ContainerNotFound(
                f"container {slug_or_id!r} does not exist: list containers with "
                "`ops-pipelines container list`, add one with `ops-pipelines container add`"
            )
        return _container(row)

    def list_containers(self, every_state: bool = False) -> list[Container]:
        """The ready containers; with ``every_state``, also those an import is writing or has
        parked (what holds collections and records, to be kept or removed)."""
        c = schema.containers.c
        query = select(schema.containers).order_by(c.slug)
        with self.engine.connect() as conn:
            rows = conn.execute(query if every_state else query.where(c.state == READY))
            return [_container(r) for r in rows]

    def snapshot(self, container_id: str, chunker: str):
        """A consistent, streamed read of the container and its chunks ``chunker`` cut (see ``kb.snapshot``)."""
        return container_snapshot(self.engine, container_id, chunker)

    def complete_import(self, container_id: str, replaces: str | None) -> Container | None:
        """An import's container takes its slug, in one transaction with the container it
        replaces (the one at that slug, if any) stepping aside: parked under a slug of its own,
        still recorded with its collections until it is removed. Returns the parked container.
        ``ContainerExists`` if the slug is not held by ``replaces`` (it changed hands meanwhile)."""
        c = schema.containers.c
        with self.engine.begin() as conn:
            slug = conn.execute(select(c.import_slug).where(c.id == container_id, c.state == IMPORTING)).scalar_one()
            holder = conn.execute(select(c.id).where(c.slug == slug)).scalar()
            if holder != replaces:
                raise ContainerExists(f"container {slug!r} changed while the import ran: run the import again")
            if replaces is not None:
                parked = _free_slug(conn, f"{slug[:40]}-replaced-{int(time.time())}")
                conn.execute(
                    update(schema.containers).where(c.id == replaces).values(slug=parked, state=PARKED, import_slug=slug)
                )
            conn.execute(
                update(schema.containers).where(c.id == container_id).values(slug=slug, state=READY, import_slug=None)
            )
        return self.get_container(replaces) if replaces is not None else None

    def delete_container(self, container_id: str) -> None:
        """The container and, by cascade, its documents, chunks, generation records and the
        vectors its archive brought (the shared embedding cache stays)."""
        with self.engine.begin() as conn:
            conn.execute(delete(schema.containers).where(schema.containers.c.id == container_id))

    def mark_synced(self, container_id: str, at: datetime | None = None) -> datetime:
        """Record that the container is in step with its source now, or since ``at`` (an import: when
        its content was synced); the sync freshness check's clock."""
        synced = utcnow() if at is None else as_utc(at)
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.containers)
                .where(schema.containers.c.id == container_id)
                .values(last_synced_at=synced)
            )
        return synced

    # ---- documents --------------------------------------------------------------------------

    def document_states(self, container_id: str, keys: Iterable[str] | None = None) -> dict[str, DocumentState]:
        """Source key -> state of the container's documents (of ``keys`` only, if given)."""
        d = schema.documents.c
        query = select(
            d.source_key, d.id, d.source_hash, d.content_hash, d.status, d.source_updated_at, d.fields
        ).where(d.container_id == container_id)
        wanted = None if keys is None else sorted(keys)
        with self.engine.connect() as conn:
            if wanted is None:
                rows = conn.execute(query).all()
            else:
                rows = [r for start in range(0, len(wanted), 500)
                        for r in conn.execute(query.where(d.source_key.in_(wanted[start : start + 500])))]
        return {
            r.source_key: DocumentState(
                r.id, r.source_hash, r.content_hash, r.status, as_utc(r.source_updated_at),
                document_fields.loads(r.fields),
            )
            for r in rows
        }

    def document_titles(self, container_id: str) -> list[tuple[str, str]]:
        """(source key, title) of the container's active documents, in source key order."""
        d = schema.documents.c
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(d.source_key, d.title)
                .where(d.container_id == container_id, d.status == "active")
                .order_by(d.source_key)
            )]

    def document_updated_at(self, container_id: str) -> dict[str, datetime | None]:
        """Source key -> the source's last update time, of every document of the container whose
        fields are known: one synced before schema 9 is left out, so a remote source reads it
        again, for its fields."""
        d = schema.documents.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.source_key, d.source_updated_at).where(d.container_id == container_id, d.fields.is_not(None))
            )
            return {key: as_utc(updated) for key, updated in rows}

    def write_documents(
        self,
        container_id: str,
        writes: Sequence[DocumentWrite],
        existing: dict[str, DocumentState],
    ) -> None:
        """Insert new documents and update changed ones (made active) in one transaction; those whose
        fields changed are stamped with a new fields revision (``kb.fields``)."""
        now = utcnow()
        d = schema.documents
        inserts, updates, refielded = [], [], []
        for w in writes:
            values = {
                "title": w.title,
                "uri": w.uri,
                "raw_sha256": w.raw_sha256,
                "source_hash": w.source_hash,
                "content_hash": w.content_hash,
                "text": w.text,
                "status": "active",
                "source_updated_at": w.source_updated_at,
                "updated_at": now,
                "archived_at": None,
                "fields": None if w.fields is None else document_fields.dumps(w.fields),
            }
            if w.source_key in existing:
                updates.append((existing[w.source_key].id, values))
                if existing[w.source_key].fields != (None if w.fields is None else dict(w.fields)):
                    refielded.append(values)
            else:
                inserts.append(
                    dict(
                        values,
                        id=str(uuid.uuid4()),
                        container_id=container_id,
                        source_key=w.source_key,
                        created_at=now,
                    )
                )
        with self.engine.begin() as conn:
            if refielded:
                revision = document_fields.bump(conn, container_id)
                for values in refielded:
                    values["fields_revision"] = revision
            if inserts:
                conn.execute(insert(d), inserts)
            for doc_id, values in updates:
                conn.execute(update(d).where(d.c.id == doc_id).values(**values))

    def set_document_status(self, document_ids: Iterable[str], status: str) -> None:
        ids = list(document_ids)
        if not ids:
            return
        now = utcnow()
        d = schema.documents
        with self.engine.begin() as conn:
            conn.execute(
                update(d)
                .where(d.c.id.in_(ids))
                .values(status=status, updated_at=now, archived_at=now if status == "archived" else None)
            )

    def count_documents(self, container_id: str) -> dict[str, int]:
        d = schema.documents.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.status, func.count()).where(d.container_id == container_id).group_by(d.status)
            )
            counts = {"active": 0, "archived": 0}
            counts.update({status: n for status, n in rows})
            return counts

    def document_counts_by_container(self) -> dict[str, dict[str, int]]:
        """Container id -> {status: documents} for every container, in one grouped query (the
        metrics endpoint's; ``count_documents`` is one container's)."""
        d = schema.documents.c
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for container_id, status, n in conn.execute(
                select(d.container_id, d.status, func.count()).group_by(d.container_id, d.status)
            ):
                counts.setdefault(container_id, {"active": 0, "archived": 0})[status] = n
        return counts

    # ---- chunks -----------------------------------------------------------------------------

    def replace_chunks(self, chunker: str, batch: Sequence[tuple[str, str, Sequence[tuple[str, str]]]]) -> None:
        """For each (document id, content hash, [(chunk hash, text)]), swap its chunk rows under
        ``chunker``.

        One transaction for the batch: each document ends with all old or all new chunks.
        """
        ch, sets = schema.chunks, schema.chunk_sets
        ids = [doc_id for doc_id, _, _ in batch]
        with self.engine.begin() as conn:
            conn.execute(delete(ch).where(ch.c.document_id.in_(ids), ch.c.chunker == chunker))
            rows = [
                {"document_id": doc_id, "chunker": chunker, "ordinal": i, "content_hash": h, "text": t}
                for doc_id, _, pieces in batch
                for i, (h, t) in enumerate(pieces)
            ]
            if rows:
                conn.execute(insert(ch), rows)
            conn.execute(delete(sets).where(sets.c.document_id.in_(ids), sets.c.chunker == chunker))
            conn.execute(
                insert(sets),
                [{"document_id": doc_id, "chunker": chunker, "content_hash": content_hash} for doc_id, content_hash, _ in batch],
            )

    def active_chunks(self, container_id: str, chunker: str) -> list[ChunkRow]:
        ch, d = schema.chunks.c, schema.documents.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ch.document_id, ch.ordinal, ch.content_hash, ch.text, d.source_key, d.title, d.uri, d.fields)
                .join_from(schema.chunks, schema.documents, ch.document_id == d.id)
                .where(d.container_id == container_id, d.status == "active", ch.chunker == chunker)
                .order_by(d.source_key, ch.ordinal)
            )
            return [ChunkRow(*r[:7], document_fields.loads(r.fields) or {}) for r in rows]

    def count_active_chunks(self, container_id: str, chunker: str) -> int:
        ch, d = schema.chunks.c, schema.documents.c
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count())
                .select_from(schema.chunks.join(schema.documents, ch.document_id == d.id))
                .where(d.container_id == container_id, d.status == "active", ch.chunker == chunker)
            ).scalar_one()

    def active_chunk_counts(self) -> dict[tuple[str, str], int]:
        """(container id, chunker) -> chunks of active documents, for every container in one
        grouped query (``count_active_chunks`` is one container's under one chunker)."""
        ch, d = schema.chunks.c, schema.documents.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.container_id, ch.chunker, func.count())
                .select_from(schema.chunks.join(schema.documents, ch.document_id == d.id))
                .where(d.status == "active")
                .group_by(d.container_id, ch.chunker)
            )
            return {(container_id, chunker): n for container_id, chunker, n in rows}

    # ---- embedding cache --------------------------------------------------------------------

    def put_embeddings(
        self, embedder_version: str, hashes: Sequence[str], vectors: np.ndarray, replace: bool = False
    ) -> None:
        """Cache vectors; an existing row is kept (same text, same vector) unless ``replace``."""
        vectors = np.asarray(vectors, dtype="<f4")
        now = utcnow()
        rows = [
            {
                "embedder_version": embedder_version,
                "chunk_hash": h,
                "dimension": int(vectors.shape[1]),
                "vector": v.tobytes(),
                "created_at": now,
            }
            for h, v in zip(hashes, vectors, strict=True)
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(_upsert(conn, schema.embeddings, replace), rows)

    def get_embeddings(
        self, embedder_version: str, hashes: Iterable[str], container_id: str | None = None
    ) -> dict[str, np.ndarray]:
        """The shared cache's vectors of ``hashes``; with ``container_id``, where the shared cache
        lacks one, the vector that container's imported archive brought (``kb.streams.with_vectors``)."""
        e, a = schema.embeddings.c, schema.archive_vectors.c
        wanted = list(set(hashes))
        found: dict[str, np.ndarray] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(
                    select(e.chunk_hash, e.vector).where(
                        e.embedder_version == embedder_version,
                        e.chunk_hash.in_(wanted[start : start + 500]),
                    )
                )
                found.update({h: np.frombuffer(v, dtype="<f4") for h, v in rows})
            lacking = [h for h in wanted if h not in found] if container_id is not None else []
            for start in range(0, len(lacking), 500):
                rows = conn.execute(
                    select(a.chunk_hash, a.vector).where(
                        a.container_id == container_id,
                        a.embedder_version == embedder_version,
                        a.chunk_hash.in_(lacking[start : start + 500]),
                    )
                )
                found.update({h: np.frombuffer(v, dtype="<f4") for h, v in rows})
        return found

    def put_archive_vectors(
        self, container_id: str, embedder_version: str, hashes: Sequence[str], vectors: np.ndarray
    ) -> None:
        """Keep the vectors an archive brought for the container imported from it, and for no
        other (never in the shared cache: nothing here computed them)."""
        vectors = np.asarray(vectors, dtype="<f4")
        now = utcnow()
        rows = [
            {"container_id": container_id, "embedder_version": embedder_version, "chunk_hash": h,
             "vector": v.tobytes(), "created_at": now}
            for h, v in zip(hashes, vectors, strict=True)
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(_upsert(conn, schema.archive_vectors, replace=False), rows)


def _upsert(conn, table, replace: bool):
    """INSERT that, on a primary-key conflict, keeps the row or (``replace``) overwrites it."""
    statement = (postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)
    if not replace:
        return statement.on_conflict_do_nothing()
    keys = [c.name for c in table.primary_key.columns]
    return statement.on_conflict_do_update(
        index_elements=keys,
        set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys},
    )


def _free_slug(conn, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... whichever no container has."""
    c = schema.containers.c
    taken = set(conn.execute(select(c.slug).where(c.slug.startswith(base))).scalars())
    return next(slug for slug in (base, *(f"{base}-{n}" for n in range(2, len(taken) + 2))) if slug not in taken)


def _container(row) -> Container:
    return Container(
        id=row.id,
        slug=row.slug,
        source_kind=row.source_kind,
        source_location=row.source_location,
        embedder_version=row.embedder_version,
        active_generation=row.active_generation,
        last_synced_at=as_utc(row.last_synced_at),
        state=row.state,
        import_slug=row.import_slug,
        declared_fields=document_fields.names_loads(row.declared_fields),
    )
