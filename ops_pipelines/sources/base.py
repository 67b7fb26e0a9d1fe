"""What every source connector yields, and the errors they raise."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ops_pipelines import settings
from ops_pipelines.errors import OperatorError

# Bump when text extraction changes, so every document's content hash changes with it.
EXTRACTOR_VERSION = "extract@1"
# A field value longer than this is left out: fields are for filtering, and every point of the
# document carries them.
MAX_FIELD_CHARS = 256


class SourceUnavailable(OperatorError, RuntimeError):
    """The source as a whole cannot be read (missing root, unreachable server): sync must stop."""


class UnreadableDocument(ValueError):
    """One record cannot be turned into text; it is skipped and named, the run goes on."""


@dataclass(frozen=True)
class Extracted:
    title: str
    text: str


@dataclass(frozen=True)
class SourceDocument:
    """One record of a source. Text extraction is deferred: an unchanged record is never parsed.
    ``fields`` are what the source knows of the record besides its text (a Redmine issue's status,
    a file's extension), by ``document_fields``: every point of the document carries them, for
    filtered searches."""

    key: str
    uri: str
    raw: bytes
    updated_at: datetime | None
    extractor: Callable[[bytes], Extracted]
    fields: Mapping[str, str] = field(default_factory=dict)

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


@dataclass(frozen=True)
class SourceUnchanged:
    """A record the source still has and that did not change since the last sync, known without
    fetching it again (an HTTP 304, a Redmine ``updated_on`` equal to the stored one)."""

    key: str


class Source(ABC):
    """A source of records. ``max_document_bytes`` (default ``OPS_SOURCE_MAX_DOCUMENT_BYTES``)
    bounds every record: a larger one is skipped and named, and not read past the limit.
    ``fields`` are the names of the record fields the operator declared for the documents'
    payloads, where the kind takes declarations (``declare_fields``)."""

    kind: str
    # The fields its documents may carry (the container's payload indexes), for a kind that fixes them.
    field_names: tuple[str, ...] = ()

    def __init__(
        self, location: str, log: logging.Logger | None = None, *, max_document_bytes: int | None = None,
        fields: Sequence[str] = (),
    ):
        self.location = location
        self.log = log or logging.getLogger(f"ops_pipelines.sources.{self.kind}")
        self.max_document_bytes = max_document_bytes or settings.source_max_document_bytes()
        self.declared_fields = self.declare_fields(fields)

    @classmethod
    def declare_fields(cls, names: Sequence[str]) -> tuple[str, ...]:
        """The field names an operator declares for this kind, checked and sorted (``ValueError``
        if the kind takes none, or a name is not one)."""
        if names:
            raise ValueError(
                f"a {cls.kind} source takes no declared fields (--field is for jsonl sources): its documents carry "
                f"{', '.join(cls.field_names) or 'no fields'}"
            )
        return ()

    @classmethod
    def payload_fields(cls, declared: Sequence[str] = ()) -> tuple[str, ...]:
        """The fields the documents of a source of this kind, with ``declared``, may carry."""
        return cls.field_names

    @classmethod
    def normalize_location(cls, location: str) -> str:
        """The canonical form of a spec's location (``ValueError`` if invalid): a file kind's is
        an absolute path."""
        return os.path.abspath(os.path.expanduser(location))

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

    def close(self) -> None:
        """Release what the source holds open (connections); it can still be used afterwards."""


class IncrementalSource(Source):
    """A remote source that can read only what changed since the state saved by the last sync.

    ``read_changes`` is given that state and ``known``: the ``updated_at`` the knowledge base
    holds for every key it has. A full read (``full=True``) yields every record the source has,
    as a ``SourceDocument`` or ``SourceUnchanged``, so a key it does not yield is gone; an
    incremental one yields only what changed, and nothing may be archived after it. Once the
    iterator is exhausted, ``next_state`` is the state to save, after the documents are committed.
    """

    next_state: dict | None = None

    @abstractmethod
    def read_changes(
        self, state: Mapping, known: Mapping[str, datetime | None], *, full: bool
    ) -> Iterator[SourceDocument | SourceSkip | SourceUnchanged]:
        """Records changed since ``state`` (all of them when ``full``)."""

    def read(self) -> Iterator[SourceDocument | SourceSkip]:
        """Every record, fetched (a full read with nothing known)."""
        for record in self.read_changes({}, {}, full=True):
            if not isinstance(record, SourceUnchanged):
                yield record


def too_large(limit: int, size: int | None = None) -> str:
    """Why a record over the document size limit is skipped (``size`` when it is known)."""
    over = f"{size:,} bytes, over" if size is not None else "over"
    return (
        f"{over} the document size limit of {limit:,} bytes: not read; to read it, raise "
        "OPS_SOURCE_MAX_DOCUMENT_BYTES (or, for one sync, --max-document-bytes / max_document_bytes)"
    )


def document_fields(values: Mapping[str, object]) -> dict[str, str]:
    """A record's fields as documents and payloads keep them, sorted by name: strings as they are,
    numbers and booleans as JSON spells them; None, lists, objects and values longer than
    ``MAX_FIELD_CHARS`` left out (a filter matches whole string values)."""
    kept = {}
    for name, value in values.items():
        if isinstance(value, (bool, int, float)):
            value = json.dumps(value)
        if isinstance(value, str) and len(value) <= MAX_FIELD_CHARS:
            kept[name] = value
    return dict(sorted(kept.items()))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(title: str, uri: str, text: str) -> str:
    """The hash chunks and payloads depend on: what the source says plus how we extracted it."""
    return sha256_hex(json.dumps([EXTRACTOR_VERSION, title, uri, text]).encode())


def parse_time(value) -> datetime | None:
    """An ISO 8601 time (``Z`` allowed; a date alone is midnight) in UTC; None if absent or invalid."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
