"""Resources, configured from environment variables (see ``ops_pipelines.settings``).

Values that can hold secrets (a PostgreSQL URL with a password, a Qdrant API key) are passed as
``EnvVar`` so the UI shows the variable's name, never its value.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import ConfigurableResource, EnvVar

from ops_pipelines import settings
from ops_pipelines.embedders import Embedder, load_embedder
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.objects import FolderObjectStore, ObjectStore
from ops_pipelines.vectors import VectorStore, open_vector_store


class KnowledgeBaseResource(ConfigurableResource):
    """The metadata DB: SQLite file (embedded default) or PostgreSQL (``OPS_KB_URL``)."""

    url: str

    @contextmanager
    def open(self) -> Iterator[KnowledgeBase]:
        kb = KnowledgeBase(self.url)
        try:
            yield kb
        finally:
            kb.close()


class VectorStoreResource(ConfigurableResource):
    """Qdrant: a server (``OPS_QDRANT_URL``, ``OPS_QDRANT_API_KEY``) or local mode in a folder."""

    url: str | None = None
    api_key: str | None = None
    path: str | None = None

    @contextmanager
    def open(self) -> Iterator[VectorStore]:
        with open_vector_store(url=self.url, api_key=self.api_key, path=self.path) as store:
            yield store


class ObjectStoreResource(ConfigurableResource):
    """Blobs and archives: a local folder by default."""

    root: str

    def open(self) -> ObjectStore:
        return FolderObjectStore(self.root)


class EmbeddersResource(ConfigurableResource):
    """Embedder versions from the registry, each loaded once per process."""

    def get(self, version: str) -> Embedder:
        return load_embedder(version)


def _env_or(name: str, default):
    return EnvVar(name) if os.environ.get(name) else default


def default_resources() -> dict:
    return {
        "kb": KnowledgeBaseResource(url=_env_or("OPS_KB_URL", settings.kb_url())),
        "vectors": VectorStoreResource(
            url=settings.qdrant_url(),
            api_key=_env_or("OPS_QDRANT_API_KEY", None),
            path=None if settings.qdrant_url() else settings.qdrant_path(),
        ),
        "objects": ObjectStoreResource(root=settings.objects_dir()),
        "embedders": EmbeddersResource(),
    }
