"""Source connectors: each yields records (key, title, uri, raw bytes, text, updated_at).

No Dagster imports. A source is named by a spec ``kind:location``, e.g. ``folder:/srv/docs`` or
``jsonl:/data/articles.jsonl``.
"""

from __future__ import annotations

import os

from ops_pipelines.sources.base import (
    EXTRACTOR_VERSION,
    Extracted,
    Source,
    SourceDocument,
    SourceSkip,
    SourceUnavailable,
    UnreadableDocument,
    content_hash,
    sha256_hex,
)
from ops_pipelines.sources.folder import FolderSource
from ops_pipelines.sources.jsonl import JsonlSource

SOURCE_KINDS: dict[str, type[Source]] = {cls.kind: cls for cls in (FolderSource, JsonlSource)}


def parse_source_spec(spec: str) -> tuple[str, str]:
    """``kind:location`` -> (kind, location); file locations are made absolute."""
    kind, sep, location = spec.partition(":")
    if not sep or not location or kind not in SOURCE_KINDS:
        raise ValueError(
            f"invalid source {spec!r}: expected one of "
            + ", ".join(f"{k}:PATH" for k in SOURCE_KINDS)
        )
    return kind, os.path.abspath(os.path.expanduser(location))


def open_source(kind: str, location: str) -> Source:
    try:
        return SOURCE_KINDS[kind](location)
    except KeyError:
        raise ValueError(f"unknown source kind {kind!r}; known: {', '.join(SOURCE_KINDS)}") from None


__all__ = [
    "EXTRACTOR_VERSION",
    "Extracted",
    "FolderSource",
    "JsonlSource",
    "SOURCE_KINDS",
    "Source",
    "SourceDocument",
    "SourceSkip",
    "SourceUnavailable",
    "UnreadableDocument",
    "content_hash",
    "open_source",
    "parse_source_spec",
    "sha256_hex",
]
