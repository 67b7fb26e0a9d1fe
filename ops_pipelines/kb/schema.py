"""The knowledge-base tables (SQLAlchemy Core), the same on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

containers = Table(
    "containers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("slug", String(64), nullable=False, unique=True),
    Column("source_kind", String(32), nullable=False),
    Column("source_location", Text, nullable=False),
    Column("embedder_version", String(128), nullable=False),
    Column("active_generation", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_synced_at", DateTime(timezone=True)),
    # ready (in service) | importing (an import writing it under a temporary slug) | parked (replaced by
    # an import, to be removed); only ready containers are listed to the operations (``kb.store``).
    Column("state", String(16), nullable=False, server_default="ready"),
    # importing: the slug it takes when its import is done; parked: the slug it gave up.
    Column("import_slug", String(64)),
    # The record fields the operator declared for the documents' payloads (a JSON list; a JSONL
    # source's, ``sources.jsonl``); NULL: none.
    Column("declared_fields", Text),
    # Bumped by every write that changes some document's fields (``kb.fields``).
    Column("fields_revision", Integer, nullable=False, server_default="0"),
)

documents = Table(
    "documents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "container_id",
        String(36),
        ForeignKey("containers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("source_key", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("uri", Text, nullable=False),
    # sha256 of the raw bytes: the blob's key in the object store.
    Column("raw_sha256", String(64), nullable=False),
    # sha256 of extractor version, uri and raw bytes: equal means unchanged, nothing is parsed.
    Column("source_hash", String(64), nullable=False),
    # sha256 of what the chunks and payloads are made of (title, uri, text, extractor version).
    Column("content_hash", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("source_updated_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("archived_at", DateTime(timezone=True)),
    # What the source knows of the document besides its text, as every point of it carries them:
    # a JSON object of strings, keys sorted. NULL: not known yet (synced before schema 9), so the
    # next sync reads the record again.
    Column("fields", Text),
    # The container's fields_revision when these fields were written, if they changed then.
    Column("fields_revision", Integer, nullable=False, server_default="0"),
    UniqueConstraint("container_id", "source_key", name="uq_documents_container_key"),
)

# A document's chunks under each chunker its container needs (the chunker of the version it
# syncs under, and of a version being built): ``chunker`` is a chunker's registry name.
chunks = Table(
    "chunks",
    metadata,
    Column(
        "document_id",
        String(36),
        ForeignKey("documents.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("chunker", String(64), primary_key=True),
    Column("ordinal", Integer, primary_key=True),
    Column("text", Text, nullable=False),
    # sha256 of chunker name + text: the embedding-cache key.
    Column("content_hash", String(64), nullable=False),
    Index("ix_chunks_content_hash", "content_hash"),
)

# The document content_hash each (document, chunker)'s chunk rows were cut from: a document whose
# content_hash differs, or that has no row, is cut again (a document may have no chunks at all).
chunk_sets = Table(
    "chunk_sets",
    metadata,
    Column(
        "document_id",
        String(36),
        ForeignKey("documents.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("chunker", String(64), primary_key=True),
    Column("content_hash", String(64), nullable=False),
)

embeddings = Table(
    "embeddings",
    metadata,
    Column("embedder_version", String(128), primary_key=True),
    Column("chunk_hash", String(64), primary_key=True),
    Column("dimension", Integer, nullable=False),
    # float32 little-endian bytes
    Column("vector", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Vectors that came in an imported archive, for the container it was imported into and no other.
# The shared ``embeddings`` cache holds only vectors computed here by the registry's embedders: an
# archive's vectors are not verified (its checksums prove only that they are what its maker wrote),
# so another container with the same chunk text computes its own. Readers of a container's vectors
# take the shared cache's first, then these (``kb.streams``); they go with their container.
archive_vectors = Table(
    "archive_vectors",
    metadata,
    Column(
        "container_id",
        String(36),
        ForeignKey("containers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("embedder_version", String(128), primary_key=True),
    Column("chunk_hash", String(64), primary_key=True),
    # float32 little-endian bytes
    Column("vector", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per Qdrant collection a container has had. ``containers.active_generation`` names the
# live one; ``collection`` is the real name (an in-place refresh can change a generation's
# embedder version without renaming its collection).
generations = Table(
    "generations",
    metadata,
    Column(
        "container_id",
        String(36),
        ForeignKey("containers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("number", Integer, primary_key=True),
    Column("embedder_version", String(128), nullable=False),
    Column("collection", String(255), nullable=False),
    # building (a shadow being filled) -> live (behind the alias) -> retired (kept for rollback)
    # -> dropped (collection deleted by retention)
    Column("state", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("activated_at", DateTime(timezone=True)),
    # The least score a search of this generation returns, calibrated on the container's golden set.
    Column("min_score", Float),
    # The container's fields_revision its points' fields are up to: the points of a document whose
    # fields_revision is above it are written again (``ingest.collection``).
    Column("fields_revision", Integer, nullable=False, server_default="0"),
)

# What a container's source connector keeps between runs (one row per container, made on first
# use): ``state`` is the connector's own JSON (a Redmine ``updated_on`` cursor, HTTP validators),
# written only after the documents it describes are committed; the breaker columns count
# consecutive failed syncs and hold the time until which syncs fail fast without a request.
source_state = Table(
    "source_state",
    metadata,
    Column(
        "container_id",
        String(36),
        ForeignKey("containers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("state", Text),
    Column("full_synced_at", DateTime(timezone=True)),
    Column("failures", Integer, nullable=False),
    Column("opened_until", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("last_failure_at", DateTime(timezone=True)),
)

# One writer at a time per container (``kb.leases``): a row per held key, ``container:<id>`` or
# ``kb`` for operations that replace everything. Not a foreign key of ``containers``: the holders
# are running processes, not data, so a lease is never backed up or restored with the rows.
leases = Table(
    "leases",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("holder", Text, nullable=False),  # a Dagster run id, or ``pid N`` outside a run
    Column("host", String(255), nullable=False),  # the holder's host name, for people
    # the kernel boot and pid namespace ``pid`` is a process of: only there can it be seen dead
    Column("pid_scope", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("token", String(32), nullable=False),  # this holding, so a taken-over holder cannot renew
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# A container's golden query sets (``quality.golden``), one row a version: the latest is the one
# the quality gate and the evaluations use. ``body`` is the JSONL as registered.
golden_sets = Table(
    "golden_sets",
    metadata,
    Column(
        "container_id",
        String(36),
        ForeignKey("containers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("content_hash", String(64), primary_key=True),
    Column("body", Text, nullable=False),
    Column("queries", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A container's own bounds for the retrieval-quality gate (defaults: OPS_QUALITY_TOLERANCE, OPS_QUALITY_FLOOR).
quality_gates = Table(
    "quality_gates",
    metadata,
    Column(
        "container_id",
        String(36),
        ForeignKey("containers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tolerance", Float),
    Column("floor", Float),
)
