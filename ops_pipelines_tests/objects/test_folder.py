import hashlib

import pytest

from ops_pipelines.objects import FolderObjectStore, ObjectNotFound, blob_key


def test_blobs_are_content_addressed_and_written_once(tmp_path):
    store = FolderObjectStore(tmp_path)
    data = b"raw bytes"
    sha = hashlib.sha256(data).hexdigest()
    key = store.put_blob(sha, data)
    assert key == blob_key(sha) == f"blobs/{sha[:2]}/{sha}"
    assert store.get_bytes(key) == data
    mtime = store.path(key).stat().st_mtime_ns
    store.put_blob(sha, data)
    assert store.path(key).stat().st_mtime_ns == mtime
    assert not list(tmp_path.rglob(".tmp-*"))
    store.delete(key)
    assert not store.exists(key)


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b", ""])
def test_keys_cannot_escape_the_root(tmp_path, key):
    with pytest.raises(ValueError, match="invalid object key"):
        FolderObjectStore(tmp_path).put_bytes(key, b"x")


def test_get_bytes_reads_whole_files_of_any_size_and_no_directories(tmp_path):
    store = FolderObjectStore(tmp_path)
    for size in (0, 1, 3 << 20):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        store.put_bytes(f"f/{size}", data)
        assert store.get_bytes(f"f/{size}") == data
    with pytest.raises(ObjectNotFound, match="'f'"):
        store.get_bytes("f")  # a folder of objects, not an object
    with pytest.raises(ObjectNotFound, match="f/0/x"):
        store.get_bytes("f/0/x")  # below a file
