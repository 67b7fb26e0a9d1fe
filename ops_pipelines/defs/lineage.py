"""What every asset declares for the UI's catalog and lineage: owners, kinds, a capability tag.

Kinds name the backends this deployment is configured with, read once when the code location
loads (like the schedules' crons): ``qdrant`` for collections and aliases (Qdrant Edge or a
server); ``s3`` for the object store when ``OPS_S3_ENDPOINT`` names one, else ``folder``; the
knowledge base's ``postgres`` or ``sqlite`` as ``OPS_KB_URL`` says; and on the embedding assets the
providers of the embedder versions the containers use (``pytorch`` for in-process
sentence-transformers, ``numpy`` for hashing, ``openai`` or ``ollama`` for a served model): the
default version's when there are no containers yet or the knowledge base cannot be read.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, make_url, select
from sqlalchemy.exc import SQLAlchemyError

from ops_pipelines import settings

OWNERS = ["team:kb-ops"]
KB = settings.kb_backend()
QDRANT = "qdrant"
OBJECTS = "s3" if settings.s3_endpoint() else "folder"
PROVIDER_KINDS = {"sentence-transformers": "pytorch", "hashing": "numpy", "openai": "openai", "ollama": "ollama"}


def capability(name: str) -> dict[str, str]:
    """The ``ops/capability`` tag: sync, refresh, export, backup, maintenance, health, alerts."""
    return {"ops/capability": name}


def versions_in_use(url: str) -> set[str]:
    """The embedder versions of the knowledge base's containers; none if it cannot be read (not
    created yet, unreachable): a read of one column, never a migration."""
    from ops_pipelines.kb import schema

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return set()  # connecting would create the file
    connect_args = {"connect_timeout": 3} if url.startswith("postgresql") else {}
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(schema.containers.c.embedder_version).distinct()).scalars())
    except SQLAlchemyError:
        return set()
    finally:
        engine.dispose()


def embedder_kinds(versions: set[str]) -> set[str]:
    """The kinds of the providers of ``versions`` (the default version's if none is registered)."""
    from ops_pipelines.embedders import DEFAULT_VERSION, get_version

    providers = set()
    for name in versions or {DEFAULT_VERSION}:
        try:
            providers.add(get_version(name).provider)
        except Exception:  # noqa: BLE001 - a version this registry lacks (or a broken registry file) shows no kind
            continue
    return {PROVIDER_KINDS.get(p, p) for p in providers}


EMBEDDERS = embedder_kinds(versions_in_use(settings.kb_url()))
