"""Embedder versions and their providers. No Dagster imports."""

from ops_pipelines.embedders.base import Embedder
from ops_pipelines.embedders.registry import (
    DEFAULT_VERSION,
    VERSIONS,
    EmbedderVersion,
    UnknownEmbedderVersion,
    get_version,
    load_embedder,
)

__all__ = [
    "DEFAULT_VERSION",
    "VERSIONS",
    "Embedder",
    "EmbedderVersion",
    "UnknownEmbedderVersion",
    "get_version",
    "load_embedder",
]
