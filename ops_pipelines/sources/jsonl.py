"""A JSON Lines file: one record per line with ``id``, ``text`` and optional ``title``, ``url``,
``updated_at`` (ISO 8601)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from ops_pipelines.sources.base import (
    Extracted,
    Source,
    SourceDocument,
    SourceSkip,
    SourceUnavailable,
    too_large,
)


class JsonlSource(Source):
    kind = "jsonl"

    @property
    def path(self) -> Path:
        return Path(self.location)

    def check(self) -> None:
        if not self.path.is_file():
            raise SourceUnavailable(f"JSONL source {self.path} does not exist or is not a file")
        if not os.access(self.path, os.R_OK):
            raise SourceUnavailable(f"JSONL source {self.path} is not readable")

    def fingerprint(self) -> str:
        self.check()
        st = self.path.stat()
        return hashlib.sha256(f"{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()

    def read(self) -> Iterator[SourceDocument | SourceSkip]:
        """Every record of the file as it was when opened: lines appended during the read wait for
        the next sync, and a line over the document size limit is skipped, never held whole."""
        self.check()
        seen: set[str] = set()
        for number, line in self._lines():
            if isinstance(line, SourceSkip):
                yield line
                continue
            if not line.strip():
                continue
            record = _parse(line, number)
            if isinstance(record, SourceSkip):
                yield record
                continue
            key, title, uri, text, updated_at = record
            if key in seen:
                yield SourceSkip(key, f"line {number}: duplicate id {key!r}, first one kept")
                continue
            seen.add(key)
            yield SourceDocument(
                key=key,
                uri=uri or f"{self.path.as_uri()}#{key}",
                raw=line.strip(),
                updated_at=updated_at,
                extractor=lambda _raw, title=title, text=text: Extracted(title, text),
            )

    def _lines(self) -> Iterator[tuple[int, bytes | SourceSkip]]:
        """(line number, line) of the regular file, up to its size when opened; a line longer than
        ``max_document_bytes`` is a ``SourceSkip`` (keyed by its id when the line starts with it)."""
        limit = self.max_document_bytes
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise SourceUnavailable(f"JSONL source {self.path}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceUnavailable(f"JSONL source {self.path} is not a regular file (a FIFO or a device?)")
            remaining, number = st.st_size, 0
            while remaining > 0:
                line = handle.readline(min(limit + 1, remaining))
                if not line:
                    return  # truncated while read
                remaining -= len(line)
                number += 1
                if len(line) <= limit or line.endswith(b"\n"):
                    yield number, line
                    continue
                yield number, SourceSkip(_leading_id(line), f"line {number}: {too_large(limit)}")
                while remaining > 0 and not line.endswith(b"\n"):  # the rest of the long line
                    line = handle.readline(min(1024 * 1024, remaining))
                    if not line:
                        return
                    remaining -= len(line)


_LEADING_ID = re.compile(rb'^\s*\{\s*"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)\s*[,}]')


def _leading_id(head: bytes) -> str | None:
    """The id of a record too large to parse, when it is the record's first key (else None)."""
    match = _LEADING_ID.match(head[:4096])
    if match is None:
        return None
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return None
    return str(value) if value != "" else None


def _parse(line: bytes, number: int):
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return SourceSkip(None, f"line {number}: not valid JSON ({exc.__class__.__name__})")
    if not isinstance(record, dict) or not isinstance(record.get("id"), (str, int)) or record.get("id") == "":
        return SourceSkip(None, f"line {number}: record has no 'id' (string or integer)")
    key = str(record["id"])
    text, title, url = record.get("text"), record.get("title", key), record.get("url")
    if not isinstance(text, str):
        return SourceSkip(key, f"line {number}: 'text' missing or not a string")
    if not isinstance(title, str) or (url is not None and not isinstance(url, str)):
        return SourceSkip(key, f"line {number}: 'title' and 'url' must be strings")
    updated_at = None
    if record.get("updated_at") is not None:
        try:
            updated_at = datetime.fromisoformat(str(record["updated_at"]).replace("Z", "+00:00"))
        except ValueError:
            return SourceSkip(key, f"line {number}: 'updated_at' is not ISO 8601")
    return key, title, url, text, updated_at
