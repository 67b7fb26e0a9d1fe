"""Object store: content-addressed blobs and archives. No Dagster imports."""

from ops_pipelines import settings
from ops_pipelines.objects.base import ObjectNotFound, ObjectStore, blob_key
from ops_pipelines.objects.folder import FolderObjectStore
from ops_pipelines.objects.s3 import ObjectStoreUnavailable, S3ObjectStore


def open_object_store() -> ObjectStore:
    """S3 when ``OPS_S3_ENDPOINT`` is set, else the folder under ``OPS_OBJECTS_DIR``."""
    endpoint = settings.s3_endpoint()
    if endpoint is None:
        return FolderObjectStore(settings.objects_dir())
    return S3ObjectStore(
        endpoint,
        settings.s3_bucket(),
        settings.s3_access_key(),
        settings.s3_secret_key(),
        secure=settings.s3_secure(),
        region=settings.s3_region(),
    )


__all__ = [
    "FolderObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreUnavailable",
    "S3ObjectStore",
    "blob_key",
    "open_object_store",
]
