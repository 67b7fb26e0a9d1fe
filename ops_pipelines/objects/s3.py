"""S3-compatible object store (MinIO in production) through the ``minio`` SDK.

The bucket is created, if missing, when the store is constructed: a wrong endpoint or key then
fails at startup with ``ObjectStoreUnavailable`` instead of at the first write.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from urllib3.util import Retry, Timeout

from ops_pipelines.objects.base import ObjectNotFound, ObjectStore, ObjectStoreUnavailable, check_key

_NOT_FOUND = {"NoSuchKey", "NotFound"}


class S3ObjectStore(ObjectStore):
    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str | None,
        secret_key: str | None,
        secure: bool = True,
        region: str | None = None,
        part_size: int = 16 * 1024 * 1024,
    ):
        self.endpoint = endpoint
        self.bucket = bucket
        self.part_size = part_size
        self.client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=_http_client(),
        )
        with self._errors():
            if not self.client.bucket_exists(bucket):
                self._make_bucket(region)

    @property
    def description(self) -> str:
        return f"s3://{self.bucket} at {self.endpoint}"

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors():
            self.client.put_object(self.bucket, check_key(key), io.BytesIO(data), len(data))

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        """Multipart above ``part_size``; the SDK aborts the upload on failure, so no partial
        object is ever visible."""
        with self._errors():
            self.client.fput_object(self.bucket, check_key(key), os.fspath(path), part_size=self.part_size)

    def get_bytes(self, key: str) -> bytes:
        with self.reader(key) as stream, self._errors(key):
            return stream.read()

    @contextmanager
    def reader(self, key: str) -> Iterator:
        with self._errors(key):
            response = self.client.get_object(self.bucket, check_key(key))
        try:
            yield response
        finally:
            response.close()
            response.release_conn()

    def get_file(self, key: str, path: str | os.PathLike) -> None:
        """Streamed to a ``.part.minio`` file beside ``path``, renamed over it when complete."""
        with self._errors(key):
            self.client.fget_object(self.bucket, check_key(key), os.fspath(path))

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        with self._errors(key):
            return self.client.stat_object(self.bucket, check_key(key)).size

    def delete(self, key: str) -> None:
        with self._errors():
            self.client.remove_object(self.bucket, check_key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        for obj in self._objects(prefix):
            yield obj.object_name

    def list_modified(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        for obj in self._objects(prefix):
            yield obj.object_name, obj.last_modified.astimezone(UTC)

    def _objects(self, prefix: str) -> Iterator:
        with self._errors():
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if not obj.is_dir:
                    yield obj

    def url(self, key: str, expires: timedelta) -> str:
        """A presigned GET; ``ObjectNotFound`` first if there is no object, as on the folder
        backend."""
        self.size(key)
        with self._errors():
            return self.client.presigned_get_object(self.bucket, key, expires=expires)

    def _make_bucket(self, region: str | None) -> None:
        try:
            self.client.make_bucket(self.bucket, location=region)
        except S3Error as exc:
            if exc.code != "BucketAlreadyOwnedByYou":  # another process created it in between
                raise

    @contextmanager
    def _errors(self, key: str | None = None):
        """Turn SDK and network errors into ``ObjectNotFound`` (for ``key``) or
        ``ObjectStoreUnavailable``; the messages name endpoint and bucket, never credentials."""
        try:
            yield
        except S3Error as exc:
            if key is not None and exc.code in _NOT_FOUND:
                raise ObjectNotFound(f"no object {key!r} in {self.description}") from None
            raise self._unavailable(f"{exc.code}: {exc.message}") from exc
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            cause = getattr(exc, "reason", None) or exc  # MaxRetryError wraps the last attempt's error
            raise self._unavailable(f"{type(cause).__name__}: {cause}") from exc

    def _unavailable(self, detail: str) -> ObjectStoreUnavailable:
        return ObjectStoreUnavailable(f"object store {self.description} is unavailable: {detail}")


def _http_client() -> urllib3.PoolManager:
    """The SDK's default client, but with 5 s to connect and 60 s to read (instead of 5 minutes
    each) and 3 quick retries on connection errors and 5xx: a dead endpoint fails in ~2 s."""
    return urllib3.PoolManager(
        timeout=Timeout(connect=5, read=60),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=Retry(total=3, backoff_factor=0.25, status_forcelist=(500, 502, 503, 504)),
    )
