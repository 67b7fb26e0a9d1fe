import hashlib

import pytest

from ops_pipelines.objects import FolderObjectStore, blob_key


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
