"""The knowledge-base store (SQLAlchemy Core on SQLite or PostgreSQL); no Dagster imports."""

from ops_pipelines.kb.generations import Generation, GenerationNotFound
from ops_pipelines.kb.leases import Lease, LeaseInfo, LeaseLost, holder_for
from ops_pipelines.kb.source_state import SourceState
from ops_pipelines.kb.store import (
    IMPORTING,
    PARKED,
    READY,
    ChunkRow,
    Container,
    ContainerExists,
    ContainerNotFound,
    DocumentState,
    DocumentWrite,
    KnowledgeBase,
)

__all__ = [
    "IMPORTING",
    "PARKED",
    "READY",
    "ChunkRow",
    "Container",
    "ContainerExists",
    "ContainerNotFound",
    "DocumentState",
    "DocumentWrite",
    "Generation",
    "GenerationNotFound",
    "KnowledgeBase",
    "Lease",
    "LeaseInfo",
    "LeaseLost",
    "SourceState",
    "holder_for",
]
