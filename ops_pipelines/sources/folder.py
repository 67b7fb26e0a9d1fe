"""A folder of Markdown, text and HTML files; the source key is the path relative to the root.
Each document's fields are that ``path`` (POSIX) and its ``extension`` (lowercase, no dot).

Only regular files inside the root are read. The tree is walked through directory descriptors
(``os.fwalk``), never through a symbolic link, and each file is opened relative to its directory
with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` to be the very regular file that was
listed. So a symbolic link (to a file or a directory, out of the root or inside it), a FIFO, a
socket or a device is skipped and named, never followed nor opened, even when it replaces a file
between the listing and the read. Every read is bounded: at most ``max_document_bytes`` (a file
larger than that, or growing past it while read, is skipped) within ``OPS_SOURCE_READ_TIMEOUT_S``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from time import monotonic

from ops_pipelines import settings
from ops_pipelines.sources.base import (
    Source,
    SourceDocument,
    SourceSkip,
    SourceUnavailable,
    document_fields,
    too_large,
)
from ops_pipelines.sources.extract import EXTRACTORS

READ_CHUNK = 1024 * 1024
_ONLY_REGULAR = "a folder source reads only regular files inside its root"
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class _NotRead(Exception):
    """A file skipped for a reason of its own (the reason is the message)."""


class FolderSource(Source):
    kind = "folder"
    field_names = ("extension", "path")

    @property
    def root(self) -> Path:
        return Path(self.location)

    def check(self) -> None:
        root = self.root
        if not root.exists():
            raise SourceUnavailable(f"folder source {root} does not exist (unmounted or moved?)")
        if not root.is_dir():
            raise SourceUnavailable(f"folder source {root} is not a directory")
        try:
            next(os.scandir(root), None)
        except OSError as exc:
            raise SourceUnavailable(f"folder source {root} cannot be listed: {exc.strerror}") from exc

    def _entries(self) -> Iterator[tuple[str, int, str, os.stat_result] | SourceSkip]:
        """(key, directory fd, name, lstat) of every eligible file, sorted, hidden files and folders
        left out; a ``SourceSkip`` for each symbolic link met on the way. The directory fd is valid
        until the next item is asked for."""

        def on_error(exc: OSError) -> None:
            raise SourceUnavailable(f"folder source {self.root}: cannot list {exc.filename}: {exc.strerror}")

        # The root itself may be a link (a mount point, a "current" link): the operator chose it.
        top = os.path.realpath(self.root)
        for dirpath, dirnames, filenames, dirfd in os.fwalk(top, onerror=on_error):
            relative = os.path.relpath(dirpath, top)
            prefix = "" if relative == "." else Path(relative).as_posix() + "/"
            descend = []
            for name in sorted(d for d in dirnames if not d.startswith(".")):
                listed = _lstat(name, dirfd)
                if listed is not None and stat.S_ISLNK(listed.st_mode):
                    yield SourceSkip(prefix + name, _link_reason(name, dirfd))
                elif listed is not None:
                    descend.append(name)
            dirnames[:] = descend  # fwalk never descends through a link; this names them too
            for name in sorted(filenames):
                if name.startswith(".") or Path(name).suffix.lower() not in EXTRACTORS:
                    continue
                listed = _lstat(name, dirfd)
                if listed is None:
                    continue  # gone since it was listed
                if stat.S_ISLNK(listed.st_mode):
                    yield SourceSkip(prefix + name, _link_reason(name, dirfd))
                else:
                    yield prefix + name, dirfd, name, listed

    def fingerprint(self) -> str:
        """File names, sizes and mtimes, from ``lstat``: nothing is opened, no link followed."""
        self.check()
        digest = hashlib.sha256()
        for entry in self._entries():
            if isinstance(entry, SourceSkip):
                digest.update(f"{entry.key}\0link\n".encode())
                continue
            key, _, _, st = entry
            kind = _special_kind(st.st_mode)
            digest.update((f"{key}\0{kind}\n" if kind else f"{key}\0{st.st_size}\0{st.st_mtime_ns}\n").encode())
        return digest.hexdigest()

    def read(self) -> Iterator[SourceDocument | SourceSkip]:
        self.check()
        limit = self.max_document_bytes
        timeout = settings.source_float("OPS_SOURCE_READ_TIMEOUT_S", 30.0)
        for entry in self._entries():
            if isinstance(entry, SourceSkip):
                yield entry
                continue
            key, dirfd, name, listed = entry
            try:
                if kind := _special_kind(listed.st_mode):
                    raise _NotRead(f"{kind}: not read; {_ONLY_REGULAR}")
                if listed.st_size > limit:
                    raise _NotRead(too_large(limit, listed.st_size))
                raw, st = _read_regular(name, dirfd, listed, limit, timeout)
            except _NotRead as exc:
                yield SourceSkip(key, str(exc))
                continue
            except OSError as exc:
                yield SourceSkip(key, f"unreadable: {exc.strerror}")
                continue
            yield SourceDocument(
                key=key,
                uri=(self.root / key).as_uri(),
                raw=raw,
                updated_at=datetime.fromtimestamp(st.st_mtime, tz=timezone.utc),
                extractor=EXTRACTORS[Path(name).suffix.lower()](key),
                fields=document_fields({"path": key, "extension": Path(name).suffix.lower().removeprefix(".")}),
            )


def _lstat(name: str, dirfd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _link_reason(name: str, dirfd: int) -> str:
    try:
        target = f" -> {os.readlink(name, dir_fd=dirfd)}"
    except OSError:
        target = ""
    return f"a symbolic link{target}: not followed; {_ONLY_REGULAR} (copy the file in instead)"


def _special_kind(mode: int) -> str | None:
    """What a file that must not be opened is, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def _read_regular(name: str, dirfd: int, listed: os.stat_result, limit: int, timeout: float):
    """(bytes, fstat) of the regular file ``listed``, opened without following a link or blocking
    on a FIFO, at most ``limit`` bytes within ``timeout`` seconds."""
    changed = _NotRead(f"changed while being read (replaced by a link or a special file): not read; {_ONLY_REGULAR}")
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dirfd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a link, or a socket, now
            raise changed from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (listed.st_dev, listed.st_ino):
            raise changed
        started, chunks, size = monotonic(), [], 0
        while chunk := os.read(fd, min(READ_CHUNK, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _NotRead(
                    f"grew past the document size limit of {limit:,} bytes while being read: not read; "
                    "sync it again once it is complete, or raise OPS_SOURCE_MAX_DOCUMENT_BYTES"
                )
            if monotonic() - started > timeout:
                raise _NotRead(
                    f"reading took longer than {timeout:g} s (OPS_SOURCE_READ_TIMEOUT_S): not read; "
                    "a slow or stalled file system?"
                )
        return b"".join(chunks), st
    finally:
        os.close(fd)
