"""Source connectors: each yields records (key, title, uri, raw bytes, text, updated_at, fields).

No Dagster imports. A source is named by a spec ``kind:location``, e.g. ``folder:/srv/docs``,
``jsonl:/data/articles.jsonl``, ``redmine:https://redmine.example.com?projects=ops&wiki=1`` or
``http:https://example.com/sitemap.xml``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ops_pipelines.sources.base import (
    EXTRACTOR_VERSION,
    Extracted,
    IncrementalSource,
    Source,
    SourceDocument,
    SourceSkip,
    SourceUnavailable,
    SourceUnchanged,
    UnreadableDocument,
    content_hash,
    document_fields,
    sha256_hex,
    too_large,
)
from ops_pipelines.sources.folder import FolderSource
from ops_pipelines.sources.http import HttpPolicy, SourceNotAllowed
from ops_pipelines.sources.jsonl import JsonlSource
from ops_pipelines.sources.pages import PagesSource
from ops_pipelines.sources.redmine import RedmineSource

SOURCE_KINDS: dict[str, type[Source]] = {
    cls.kind: cls for cls in (FolderSource, JsonlSource, RedmineSource, PagesSource)
}
_FORMS = "folder:PATH, jsonl:PATH, redmine:URL?projects=A,B[&wiki=1], http:URL [URL ...]"


def parse_source_spec(spec: str) -> tuple[str, str]:
    """``kind:location`` -> (kind, canonical location): file paths made absolute, URLs checked."""
    kind, sep, location = spec.partition(":")
    if not sep or not location.strip() or kind not in SOURCE_KINDS:
        raise ValueError(f"invalid source {spec!r}: expected one of {_FORMS}")
    return kind, SOURCE_KINDS[kind].normalize_location(location)


def open_source(
    kind: str, location: str, log: logging.Logger | None = None, *, max_document_bytes: int | None = None,
    fields: Sequence[str] = (),
) -> Source:
    """The source of ``kind`` at ``location``; records over ``max_document_bytes`` (default
    ``OPS_SOURCE_MAX_DOCUMENT_BYTES``) are skipped and named; ``fields``: the record fields
    declared for the documents (a JSONL source's; ``ValueError`` for a kind that takes none)."""
    try:
        cls = SOURCE_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown source kind {kind!r}; known: {', '.join(SOURCE_KINDS)}") from None
    return cls(location, log, max_document_bytes=max_document_bytes, fields=fields)


def payload_field_names(kind: str, declared: Sequence[str] = ()) -> tuple[str, ...]:
    """The fields the documents of a ``kind`` source with ``declared`` fields may carry (none for
    a kind this code does not know, as an archive may name)."""
    cls = SOURCE_KINDS.get(kind)
    return cls.payload_fields(declared) if cls is not None else ()


__all__ = [
    "EXTRACTOR_VERSION",
    "SOURCE_KINDS",
    "Extracted",
    "FolderSource",
    "HttpPolicy",
    "IncrementalSource",
    "JsonlSource",
    "PagesSource",
    "RedmineSource",
    "Source",
    "SourceDocument",
    "SourceNotAllowed",
    "SourceSkip",
    "SourceUnavailable",
    "SourceUnchanged",
    "UnreadableDocument",
    "content_hash",
    "document_fields",
    "open_source",
    "parse_source_spec",
    "payload_field_names",
    "sha256_hex",
    "too_large",
]
