"""What every asset declares for the UI's catalog and lineage: owners, kinds, a capability tag.

Kinds name where an asset lives: ``qdrant`` for collections and aliases, ``s3`` for what is in the
object store (MinIO/S3 in production; the local folder backend stands in for it), and the
knowledge base's backend, ``postgres`` or ``sqlite``, as ``OPS_KB_URL`` says when the code
location loads (like the schedules' crons, read once at load).
"""

from __future__ import annotations

from ops_pipelines import settings

OWNERS = ["team:kb-ops"]
KB = settings.kb_backend()
QDRANT = "qdrant"
OBJECTS = "s3"


def capability(name: str) -> dict[str, str]:
    """The ``ops/capability`` tag: sync, refresh, export, backup, maintenance, health, alerts."""
    return {"ops/capability": name}
