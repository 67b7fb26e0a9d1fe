"""Embedder versions and their providers. No Dagster imports."""

from ops_pipelines.embedders.base import Embedder
from ops_pipelines.embedders.registry import (
    DEFAULT_VERSION,
    EmbedderVersion,
    InvalidRegistry,
    UnknownEmbedderVersion,
    VersionEmbedder,
    chunker_of,
    get_version,
    load_embedder,
    versions,
)

__all__ = [
    "DEFAULT_VERSION",
    "Embedder",
    "EmbedderVersion",
    "InvalidRegistry",
    "UnknownEmbedderVersion",
    "VersionEmbedder",
    "chunker_of",
    "get_version",
    "load_embedder",
    "versions",
]
