"""Object store: content-addressed blobs and archives. No Dagster imports.

``S3ObjectStore`` is imported from ``objects.s3`` when it is first asked for: the minio SDK (and
the crypto it loads) costs a command's start-up half a second, and the embedded default, a
folder, never needs it.
"""

from ops_pipelines import settings
from ops_pipelines.objects.base import ObjectNotFound, ObjectStore, ObjectStoreUnavailable, blob_key
from ops_pipelines.objects.folder import FolderObjectStore


def open_object_store() -> ObjectStore:
    """S3 when ``OPS_S3_ENDPOINT`` is set, else the folder under ``OPS_OBJECTS_DIR``."""
    endpoint = settings.s3_endpoint()
    if endpoint is None:
        return FolderObjectStore(settings.objects_dir())
    from ops_pipelines.objects.s3 import S3ObjectStore

    return S3ObjectStore(
        endpoint,
        settings.s3_bucket(),
        settings.s3_access_key(),
        settings.s3_secret_key(),
        secure=settings.s3_secure(),
        region=settings.s3_region(),
    )


def __getattr__(name: str):
    if name == "S3ObjectStore":
        from ops_pipelines.objects.s3 import S3ObjectStore

        return S3ObjectStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FolderObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreUnavailable",
    "S3ObjectStore",
    "blob_key",
    "open_object_store",
]
