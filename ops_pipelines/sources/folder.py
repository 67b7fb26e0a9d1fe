"""A folder of Markdown, text and HTML files; the source key is the path relative to the root."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from ops_pipelines.sources.base import Source, SourceDocument, SourceSkip, SourceUnavailable
from ops_pipelines.sources.extract import EXTRACTORS


class FolderSource(Source):
    kind = "folder"

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

    def _files(self) -> Iterator[tuple[str, Path]]:
        """(key, path) of every eligible file, sorted, hidden files and folders left out."""

        def on_error(exc: OSError) -> None:
            raise SourceUnavailable(f"folder source {self.root}: cannot list {exc.filename}: {exc.strerror}")

        for dirpath, dirnames, filenames in os.walk(self.root, onerror=on_error):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith(".") or path.suffix.lower() not in EXTRACTORS:
                    continue
                yield path.relative_to(self.root).as_posix(), path

    def fingerprint(self) -> str:
        self.check()
        digest = hashlib.sha256()
        for key, path in self._files():
            try:
                st = path.stat()
            except OSError:
                digest.update(f"{key}\0gone\n".encode())
                continue
            digest.update(f"{key}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def read(self) -> Iterator[SourceDocument | SourceSkip]:
        self.check()
        for key, path in self._files():
            try:
                raw = path.read_bytes()
                mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
            except OSError as exc:
                yield SourceSkip(key, f"unreadable: {exc.strerror}")
                continue
            yield SourceDocument(
                key=key,
                uri=path.as_uri(),
                raw=raw,
                updated_at=mtime,
                extractor=EXTRACTORS[path.suffix.lower()](key),
            )
