"""Object store: content-addressed blobs and archives. No Dagster imports."""

from ops_pipelines.objects.base import ObjectStore, blob_key
from ops_pipelines.objects.folder import FolderObjectStore

__all__ = ["FolderObjectStore", "ObjectStore", "blob_key"]
