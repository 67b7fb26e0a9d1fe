"""Resources, configured from environment variables (see ``ops_pipelines.settings``).

Values that can hold secrets (a PostgreSQL URL with a password, Qdrant and S3 keys) are passed as
``EnvVar`` so the UI shows the variable's name, never its value.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import ConfigurableResource, EnvVar, InitResourceContext

from ops_pipelines import settings
from ops_pipelines.defs.leases import release_run_leases
from ops_pipelines.embedders import VersionEmbedder, load_embedder
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.objects import FolderObjectStore, ObjectStore
from ops_pipelines.vectors import VectorStore, open_vector_store


class KnowledgeBaseResource(ConfigurableResource):
    """The metadata DB: SQLite file (embedded default) or PostgreSQL (``OPS_KB_URL``). At the end of
    a run, the container leases its steps kept are let go (``defs.leases``)."""

    url: str

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        release_run_leases(context.run_id, context.log)

    @contextmanager
    def open(self) -> Iterator[KnowledgeBase]:
        kb = KnowledgeBase(self.url)
        try:
            yield kb
        finally:
            kb.close()


class VectorStoreResource(ConfigurableResource):
    """Qdrant: a server (``OPS_QDRANT_URL``, ``OPS_QDRANT_API_KEY``) or Qdrant Edge embedded in a
    folder (``OPS_QDRANT_PATH``)."""

    url: str | None = None
    api_key: str | None = None
    path: str | None = None

    @contextmanager
    def open(self) -> Iterator[VectorStore]:
        with open_vector_store(url=self.url, api_key=self.api_key, path=self.path) as store:
            yield store


class ObjectStoreResource(ConfigurableResource):
    """Blobs and archives: S3-compatible storage (MinIO) when ``s3_endpoint`` is set, else a
    local folder (``root``)."""

    root: str | None = None
    s3_endpoint: str | None = None
    s3_bucket: str = "ops-pipelines"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_secure: bool = True
    s3_region: str | None = None

    def open(self) -> ObjectStore:
        if self.s3_endpoint:
            from ops_pipelines.objects.s3 import S3ObjectStore

            return S3ObjectStore(
                self.s3_endpoint, self.s3_bucket, self.s3_access_key, self.s3_secret_key,
                secure=self.s3_secure, region=self.s3_region,
            )
        if not self.root:
            raise ValueError("the object store needs either s3_endpoint or a folder root")
        return FolderObjectStore(self.root)


class AlertWebhookResource(ConfigurableResource):
    """Where run-failure alerts are posted (``OPS_ALERT_WEBHOOK_URL``, a secret); unset: alerts are
    recorded in Dagster only. ``ui_url`` (``OPS_DAGSTER_UI_URL``) adds a link to the run."""

    url: str | None = None
    ui_url: str | None = None


class EmbeddersResource(ConfigurableResource):
    """Embedder versions from the registry, each loaded once per process."""

    def get(self, version: str) -> VersionEmbedder:
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
        "objects": ObjectStoreResource(
            root=settings.objects_dir(),
            s3_endpoint=settings.s3_endpoint(),
            s3_bucket=settings.s3_bucket(),
            s3_access_key=_env_or("OPS_S3_ACCESS_KEY", None),
            s3_secret_key=_env_or("OPS_S3_SECRET_KEY", None),
            s3_secure=settings.s3_secure(),
            s3_region=settings.s3_region(),
        ),
        "embedders": EmbeddersResource(),
        "alerts": AlertWebhookResource(url=_env_or("OPS_ALERT_WEBHOOK_URL", None), ui_url=settings.dagster_ui_url()),
    }
