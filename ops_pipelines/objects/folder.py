"""The embedded-default object store: a local folder, written atomically."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ops_pipelines.objects.base import ObjectNotFound, ObjectStore, check_key


class FolderObjectStore(ObjectStore):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def description(self) -> str:
        return f"folder {self.root}"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _file(self, key: str) -> str:
        """``path`` as a str: joining Paths costs more than the stat or open it is for, and an
        export stats and opens every blob."""
        return f"{self.root}/{check_key(key)}"

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._atomic(key) as handle:
            handle.write(data)

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        with open(path, "rb") as source, self._atomic(key) as handle:
            shutil.copyfileobj(source, handle, 1 << 20)

    def move_file(self, key: str, path: str | os.PathLike) -> None:
        """A rename (an import's or a restore's blobs: a copy of each cost three times as much);
        a copy across file systems."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(path, 0o600)  # as ``put_file``'s temp files are made
            os.replace(path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self.put_file(key, path)

    def get_bytes(self, key: str) -> bytes:
        """By ``os.open`` and ``os.read``: a file object costs more than the read of a small
        blob, and an export reads every blob. One read of one byte more than ``fstat`` says
        usually does: it comes back short at the end of the file."""
        try:
            fd = os.open(self._file(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(key) from None
        try:
            facts = os.fstat(fd)
            if not stat.S_ISREG(facts.st_mode):
                raise self._missing(key)
            data = os.read(fd, facts.st_size + 1)
            if len(data) == facts.st_size:
                return data
            parts = [data]  # changed since the fstat, or past what one read returns (2 GiB)
            while block := os.read(fd, 1 << 20):
                parts.append(block)
            return b"".join(parts)
        finally:
            os.close(fd)

    def get_file(self, key: str, path: str | os.PathLike) -> None:
        shutil.copyfile(self._existing(key), path)

    def reader(self, key: str):
        return self._open(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        """One ``stat`` (an export asks for the size of every blob)."""
        try:
            facts = os.stat(self._file(key))
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(key) from None
        if not stat.S_ISREG(facts.st_mode):
            raise self._missing(key)
        return facts.st_size

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        for key, _ in self._files(prefix):
            yield key

    def list_modified(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        for key, path in self._files(prefix):
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:  # deleted since the directory walk
                continue
            yield key, datetime.fromtimestamp(modified, UTC)

    def _files(self, prefix: str) -> Iterator[tuple[str, Path]]:
        if not self.root.is_dir():
            return
        for path in self.root.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and not path.name.startswith(".tmp-") and key.startswith(prefix):
                yield key, path

    def url(self, key: str, expires: timedelta) -> str:
        return self._existing(key).resolve().as_uri()

    def _existing(self, key: str) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise self._missing(key)
        return path

    def _open(self, key: str):
        try:
            return open(self._file(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._missing(key) from None

    def _missing(self, key: str) -> ObjectNotFound:
        return ObjectNotFound(f"no object {key!r} in {self.description}")

    def _atomic(self, key: str):
        return _AtomicWrite(self.path(key))


class _AtomicWrite:
    """A temp file beside the target, renamed over it on success, removed on failure."""

    def __init__(self, target: Path):
        self.target = target

    def __enter__(self):
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.target.parent, prefix=".tmp-")
        self.handle = os.fdopen(fd, "wb")
        return self.handle

    def __exit__(self, exc_type, exc, tb):
        self.handle.close()
        if exc_type is None:
            os.replace(self.tmp, self.target)
        else:
            Path(self.tmp).unlink(missing_ok=True)
        return False
