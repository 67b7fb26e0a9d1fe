"""What every source connector yields, and the errors they raise."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

# Bump when text extraction changes, so every document's content hash changes with it.
EXTRACTOR_VERSION = "extract@1"


class SourceUnavailable(RuntimeError):
    """The source as a whole cannot be read (missing root, unreachable server): sync must stop."""


class UnreadableDocument(ValueError):
    """One record cannot be turned into text; it is skipped and named, the run goes on."""


@dataclass(frozen=True)
class Extracted:
    title: str
    text: str


@dataclass(frozen=True)
class SourceDocument:
    """One record of a source. Text extraction is deferred: an unchanged record is never parsed."""

    key: str
    uri: str
    raw: bytes
    updated_at: datetime | None
    extractor: Callable[[bytes], Extracted]

    def extract(self) -> Extracted:
        extracted = self.extractor(self.raw)
        if "\x00" in extracted.text or "\x00" in extracted.title:
            raise UnreadableDocument("contains NUL characters (a binary file?)")
        return extracted


@dataclass(frozen=True)
class SourceSkip:
    """A record the source saw but could not read. ``key`` is None when it cannot be identified."""

    key: str | None
    reason: str


class Source(ABC):
    kind: str

    def __init__(self, location: str):
        self.location = location

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.location}"

    @abstractmethod
    def check(self) -> None:
        """Raise ``SourceUnavailable`` unless the source can be read right now."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A cheap digest that changes when the source's content may have changed."""

    @abstractmethod
    def read(self) -> Iterator[SourceDocument | SourceSkip]:
        """Every record, after ``check``; raises ``SourceUnavailable`` if the source goes away."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(title: str, uri: str, text: str) -> str:
    """The hash chunks and payloads depend on: what the source says plus how we extracted it."""
    return sha256_hex(json.dumps([EXTRACTOR_VERSION, title, uri, text]).encode())
