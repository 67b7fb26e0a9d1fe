"""The object-store interface: keys are ``/``-separated relative names."""

from __future__ import annotations

from abc import ABC, abstractmethod


class ObjectStore(ABC):
    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def put_blob(self, sha256: str, data: bytes) -> str:
        """Store raw bytes under their sha256 once; returns the key."""
        key = blob_key(sha256)
        if not self.exists(key):
            self.put_bytes(key, data)
        return key


def blob_key(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256}"


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key
