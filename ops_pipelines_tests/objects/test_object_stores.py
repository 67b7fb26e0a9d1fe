"""Both object-store backends against the same contract: a folder in tmp_path and a real S3
server (SeaweedFS, see the ``s3_server`` fixture) with a fresh bucket per test."""

import hashlib
import os
import socket
import time
import traceback
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from ops_pipelines import settings
from ops_pipelines.objects import (
    FolderObjectStore,
    ObjectNotFound,
    ObjectStoreUnavailable,
    S3ObjectStore,
    blob_key,
    open_object_store,
)

MB = 1024 * 1024


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path):
    if request.param == "folder":
        return FolderObjectStore(tmp_path / "objects")
    return request.getfixturevalue("s3_server").store()


def write_random_file(path, size: int) -> str:
    """``size`` random bytes written 1 MB at a time; returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for _ in range(size // MB):
            chunk = os.urandom(MB)
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def sha256_of(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def test_bytes_round_trip_exists_size_delete(store):
    store.put_bytes("docs/a.txt", b"first")
    store.put_bytes("docs/a.txt", b"second version")
    assert store.get_bytes("docs/a.txt") == b"second version"
    assert store.exists("docs/a.txt")
    assert store.size("docs/a.txt") == len(b"second version")
    store.delete("docs/a.txt")
    assert not store.exists("docs/a.txt")
    store.delete("docs/a.txt")


def test_missing_objects_raise_object_not_found(store, tmp_path):
    for read in (
        lambda: store.get_bytes("no/such"),
        lambda: store.get_file("no/such", tmp_path / "out"),
        lambda: store.size("no/such"),
        lambda: store.url("no/such", timedelta(minutes=5)),
    ):
        with pytest.raises(ObjectNotFound, match="no/such"):
            read()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b", ""])
def test_invalid_keys_are_refused(store, key):
    with pytest.raises(ValueError, match="invalid object key"):
        store.put_bytes(key, b"x")


def test_big_file_round_trip_is_streamed(store, tmp_path):
    """40 MB, more than two 16 MB parts: a multipart upload on S3."""
    source, copy = tmp_path / "big.bin", tmp_path / "down" / "big.bin"
    copy.parent.mkdir()
    sha = write_random_file(source, 40 * MB)
    store.put_file("archives/big.bin", source)
    assert store.size("archives/big.bin") == 40 * MB
    store.get_file("archives/big.bin", copy)
    assert sha256_of(copy) == sha
    assert sorted(p.name for p in copy.parent.iterdir()) == ["big.bin"]
    if isinstance(store, S3ObjectStore):  # a multipart ETag ends with the number of parts
        assert store.client.stat_object(store.bucket, "archives/big.bin").etag.endswith("-3")


def test_list_by_prefix(store):
    for key in ("a/1", "a/2", "ab/3", "b/4", "a/deep/5"):
        store.put_bytes(key, key.encode())
    assert sorted(store.list("a/")) == ["a/1", "a/2", "a/deep/5"]
    assert sorted(store.list("a")) == ["a/1", "a/2", "a/deep/5", "ab/3"]
    assert sorted(store.list()) == ["a/1", "a/2", "a/deep/5", "ab/3", "b/4"]
    assert list(store.list("zzz")) == []


def test_url_downloads_the_object(store):
    data = os.urandom(100_000)
    store.put_bytes("dl/data.bin", data)
    url = store.url("dl/data.bin", timedelta(minutes=5))
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data
    if isinstance(store, FolderObjectStore):
        assert url == store.path("dl/data.bin").resolve().as_uri()
    else:
        assert url.startswith(f"http://{store.endpoint}/{store.bucket}/dl/data.bin?")


def test_presigned_url_is_refused_when_tampered_or_expired(s3_server):
    store = s3_server.store()
    store.put_bytes("dl/data.bin", b"secret document")
    url = store.url("dl/data.bin", timedelta(minutes=5))
    head, signature = url.split("X-Amz-Signature=")
    tampered = f"{head}X-Amz-Signature={signature[::-1]}"
    expired = store.client.presigned_get_object(
        store.bucket,
        "dl/data.bin",
        expires=timedelta(seconds=60),
        request_date=datetime.now(timezone.utc) - timedelta(hours=1),
    )
    for refused, code in ((tampered, "SignatureDoesNotMatch"), (expired, "expired")):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(refused, timeout=10)
        assert info.value.code == 403
        assert code in info.value.read().decode()


def test_put_blob_writes_once(store, monkeypatch):
    data = b"raw bytes of a document"
    sha = hashlib.sha256(data).hexdigest()
    writes = []
    put_bytes = store.put_bytes
    monkeypatch.setattr(store, "put_bytes", lambda key, data: writes.append(key) or put_bytes(key, data))
    assert store.put_blob(sha, data) == store.put_blob(sha, data) == blob_key(sha)
    assert writes == [blob_key(sha)]
    assert store.get_bytes(blob_key(sha)) == data
    assert list(store.list("blobs/")) == [blob_key(sha)]


def test_wrong_secret_key_is_refused_without_leaking_it(s3_server):
    secret = "wrong-secret-that-must-not-leak"
    with pytest.raises(ObjectStoreUnavailable) as info:
        S3ObjectStore(s3_server.endpoint, "test-wrong-key", s3_server.access_key, secret, secure=False)
    message = str(info.value)
    assert f"s3://test-wrong-key at {s3_server.endpoint}" in message
    assert "SignatureDoesNotMatch" in message
    assert secret not in "".join(traceback.format_exception(info.value))


def test_unreachable_endpoint_fails_fast():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{sock.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(ObjectStoreUnavailable, match=f"s3://kb-objects at {endpoint}"):
        S3ObjectStore(endpoint, "kb-objects", "key", "not-a-real-secret", secure=False)
    assert time.monotonic() - start < 15


SECURE = [None, "", "true", "1", "YES"]
INSECURE = ["false", "0", "no", " No "]


@pytest.mark.parametrize("raw", SECURE + INSECURE)
def test_s3_secure_flag(monkeypatch, raw):
    if raw is None:
        monkeypatch.delenv("OPS_S3_SECURE", raising=False)
    else:
        monkeypatch.setenv("OPS_S3_SECURE", raw)
    assert settings.s3_secure() is (raw in SECURE)


def test_s3_secure_flag_rejects_anything_else(monkeypatch):
    monkeypatch.setenv("OPS_S3_SECURE", "maybe")
    with pytest.raises(ValueError, match="OPS_S3_SECURE='maybe' is not a boolean"):
        settings.s3_secure()


def test_open_object_store_defaults_to_the_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("OPS_S3_ENDPOINT", raising=False)
    monkeypatch.setenv("OPS_OBJECTS_DIR", str(tmp_path / "objects"))
    store = open_object_store()
    assert isinstance(store, FolderObjectStore)
    assert store.root == tmp_path / "objects"


def test_open_object_store_uses_s3_when_an_endpoint_is_set(monkeypatch, s3_server):
    env = s3_server.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = open_object_store()
    assert isinstance(store, S3ObjectStore)
    assert store.description == f"s3://{env['OPS_S3_BUCKET']} at {s3_server.endpoint}"
    store.put_bytes("k", b"v")
    assert s3_server.store(env["OPS_S3_BUCKET"]).get_bytes("k") == b"v"


def test_move_file_puts_a_file_the_caller_is_done_with(store, tmp_path):
    source = tmp_path / "blob"
    source.write_bytes(b"moved bytes")
    store.move_file("blobs/ab/moved", source)
    assert store.get_bytes("blobs/ab/moved") == b"moved bytes"
    if isinstance(store, FolderObjectStore):  # renamed into place, not copied; private as put_file's
        assert not source.exists() and os.stat(store.path("blobs/ab/moved")).st_mode & 0o777 == 0o600


def test_a_folder_store_copies_a_moved_file_across_file_systems(tmp_path, monkeypatch):
    import errno

    store = FolderObjectStore(tmp_path / "objects")
    source = tmp_path / "blob"
    source.write_bytes(b"copied bytes")
    rename = os.replace

    def across_devices(src, dst):  # the moved file is on another file system; put_file's temp file is not
        if os.fspath(src) == os.fspath(source):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        rename(src, dst)

    monkeypatch.setattr(os, "replace", across_devices)
    store.move_file("blobs/cd/copied", source)
    assert store.get_bytes("blobs/cd/copied") == b"copied bytes" and source.exists()
