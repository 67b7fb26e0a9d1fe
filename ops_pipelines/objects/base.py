"""The object-store interface: keys are ``/``-separated relative names.

Two backends implement it: a local folder (the embedded default) and S3-compatible storage
through the ``minio`` SDK (MinIO in production). Files move by path, streamed, so an archive
never has to fit in memory.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import BinaryIO

from ops_pipelines.errors import OperatorError


class ObjectNotFound(OperatorError, LookupError):
    pass


class ObjectStoreUnavailable(OperatorError, RuntimeError):
    """The object store cannot be reached or refuses the request (network, credentials, 5xx)."""


class ObjectStore(ABC):
    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; ``ObjectNotFound`` if there is none."""

    @abstractmethod
    def put_file(self, key: str, path: str | os.PathLike) -> None:
        """Upload a local file, streamed (multipart on S3); the object appears whole or not at all."""

    def move_file(self, key: str, path: str | os.PathLike) -> None:
        """Put a local file the caller is done with: moved into place where the store can (a
        folder on the same file system), else uploaded as ``put_file`` does (the file is left)."""
        self.put_file(key, path)

    @abstractmethod
    def get_file(self, key: str, path: str | os.PathLike) -> None:
        """Download to a local file, streamed; ``ObjectNotFound`` if there is none."""

    @abstractmethod
    def reader(self, key: str) -> AbstractContextManager[BinaryIO]:
        """The object's bytes as a stream, closed on exit; ``ObjectNotFound`` if there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error if it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix``, in no promised order."""

    @abstractmethod
    def list_modified(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        """(key, last-modified time in UTC) of the keys starting with ``prefix``, in no promised
        order; the time comes with the listing, at no extra request per object."""

    @abstractmethod
    def url(self, key: str, expires: timedelta) -> str:
        """A URL to download the object: presigned GET on S3 (valid for ``expires``), a
        ``file://`` URL on the folder backend."""

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the objects are, for logs and metadata (never with credentials)."""

    def put_blob(self, sha256: str, data: bytes) -> str:
        """Store raw bytes under their sha256 once; returns the key."""
        key = blob_key(sha256)
        if not self.exists(key):
            self.put_bytes(key, data)
        return key


def blob_key(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256}"


def check_key(key: str) -> str:
    parts = key.split("/")  # an empty key, a leading, trailing or double "/" give an empty part
    if "" in parts or "." in parts or ".." in parts:
        raise ValueError(f"invalid object key {key!r}")
    return key
