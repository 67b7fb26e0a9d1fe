"""A JSON Lines file: one record per line with ``id``, ``text`` and optional ``title``, ``url``,
``updated_at`` (ISO 8601). Of a record's other keys, those the operator declared for the
container (``container add ... --field team``) are the document's fields, as strings; a declared
key a record lacks (or holds null, a list or an object) is left out of its fields."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from ops_pipelines.sources.base import (
    Extracted,
    Source,
    SourceDocument,
    SourceSkip,
    SourceUnavailable,
    document_fields,
    too_large,
)

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
# In the payload already: as source_key, text, title, uri.
_RESERVED = ("id", "text", "title", "url")
MAX_DECLARED = 32


class JsonlSource(Source):
    kind = "jsonl"

    @classmethod
    def declare_fields(cls, names: Sequence[str]) -> tuple[str, ...]:
        """Field names are letters, digits, ``_`` and ``-`` (no ``.``: filters name ``fields.<name>``
        paths), not one of the keys the payload carries already."""
        unique = sorted(set(names))
        bad = [n for n in unique if not _FIELD_NAME.match(n)]
        if bad:
            raise ValueError(
                f"invalid field name(s) {', '.join(map(repr, bad))}: a declared field is a key of the JSONL records, "
                "of letters, digits, '_' and '-', starting with a letter or '_', at most 64 characters"
            )
        reserved = [n for n in unique if n in _RESERVED]
        if reserved:
            raise ValueError(
                f"field(s) {', '.join(reserved)} need no declaring: every point carries the record's id, text, title "
                "and url already (as source_key, text, title, uri)"
            )
        if len(unique) > MAX_DECLARED:
            raise ValueError(f"{len(unique)} fields declared, at most {MAX_DECLARED}: keep to those searches filter on")
        return tuple(unique)

    @classmethod
    def payload_fields(cls, declared: Sequence[str] = ()) -> tuple[str, ...]:
        return tuple(declared)

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
            key, title, uri, text, updated_at, values = record
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
                fields=document_fields({name: values[name] for name in self.declared_fields if name in values}),
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
    return key, title, url, text, updated_at, record
