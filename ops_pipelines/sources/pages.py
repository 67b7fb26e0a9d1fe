"""Web pages: a list of URLs and/or sitemaps, fetched with conditional GETs.

Spec: ``http:URL [URL ...]`` (whitespace-separated). A URL whose path ends in ``.xml`` is a
sitemap (``<urlset>``, or a ``<sitemapindex>`` of sitemaps, one level): its ``<loc>`` pages are
read, with their ``<lastmod>``. Each page's ``ETag`` and ``Last-Modified`` are kept in the
container's source state and sent back as ``If-None-Match`` / ``If-Modified-Since``, so an
unchanged page costs one request and a ``304`` (nothing downloaded, nothing parsed). The source
key is the page's URL; HTML is turned into text by the folder source's extractor. A page's one
field is its ``host`` (the URL's host name, lowercase).

An incremental read requests the pages the sitemap says changed since the last sync (``lastmod``
at or after the cursor, or no ``lastmod``) and pages the knowledge base does not have; a full read
requests every page, and a page gone from the sitemap or answering 404/410 is then archived.
"""

from __future__ import annotations

import hashlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from urllib.parse import urlsplit

from ops_pipelines.sources.base import (
    IncrementalSource,
    SourceDocument,
    SourceSkip,
    SourceUnavailable,
    SourceUnchanged,
    document_fields,
    parse_time,
    too_large,
)
from ops_pipelines.sources.extract import html, markdown, plain_text
from ops_pipelines.sources.http import (
    HttpClient,
    HttpPolicy,
    HttpResult,
    ResponseTooLarge,
    SourceNotAllowed,
    check_url,
    http_date,
)

_EXTRACTORS = {
    "text/html": html,
    "application/xhtml+xml": html,
    "text/plain": plain_text,
    "text/markdown": markdown,
}
GONE = (404, 410)


class PagesSource(IncrementalSource):
    kind = "http"
    field_names = ("host",)

    def __init__(self, location: str, log=None, *, policy: HttpPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, max_document_bytes: int | None = None,
                 fields: Sequence[str] = ()):
        super().__init__(location, log, max_document_bytes=max_document_bytes, fields=fields)
        self.urls = parse_location(location)
        self._policy = policy
        self._sleep = sleep
        self._client: HttpClient | None = None
        self._listed: dict[str, datetime | None] | None = None  # sitemaps read by check()

    @classmethod
    def normalize_location(cls, location: str) -> str:
        return " ".join(parse_location(location))

    @property
    def requests(self) -> int:
        return self._client.requests if self._client else 0

    def check(self) -> None:
        """Every sitemap answers (what it lists is kept for the read that follows); a plain page
        only has to pass the outbound policy (a missing page is a per-page matter)."""
        for url in self.urls:
            if not is_sitemap(url):
                check_url(url, self._http().policy)
        self._listed = self._entries()

    def fingerprint(self) -> str:
        """Sitemaps: the newest ``lastmod`` and the pages listed; plain pages: a HEAD each, whose
        ``ETag``/``Last-Modified``/``Content-Length`` stand for the content."""
        self._listed = None
        entries = self._entries()
        digest = hashlib.sha256()
        newest = ""
        for url, lastmod in entries.items():
            if lastmod is not None:
                newest = max(newest, lastmod.isoformat())
                digest.update(f"{url}\0{lastmod.isoformat()}\n".encode())
                continue
            head = self._http().get(url, method="HEAD")
            validators = [head.headers.get(h, "") for h in ("ETag", "Last-Modified", "Content-Length")]
            digest.update(f"{url}\0{head.status}\0{chr(0).join(validators)}\n".encode())
        return f"{newest or 'no lastmod'}|{len(entries)} pages|{digest.hexdigest()[:16]}"

    def read_changes(
        self, state: Mapping, known: Mapping[str, datetime | None], *, full: bool
    ) -> Iterator[SourceDocument | SourceSkip | SourceUnchanged]:
        validators: dict[str, dict] = dict(state.get("validators") or {})
        cursor = parse_time(state.get("lastmod"))
        kept: dict[str, dict] = {}
        newest = cursor
        entries, self._listed = self._listed or self._entries(), None
        for url, lastmod in entries.items():
            if lastmod is not None and (newest is None or lastmod > newest):
                newest = lastmod
            if not full and url in known and cursor is not None and lastmod is not None and lastmod < cursor:
                if url in validators:
                    kept[url] = validators[url]
                continue  # the sitemap says it has not changed since the last sync: no request
            record, page_validators = self._page(url, lastmod, validators.get(url) if url in known else None)
            if page_validators:
                kept[url] = page_validators
            if record is not None:
                yield record
        if not full:  # pages not looked at keep what they had
            kept = {**{u: v for u, v in validators.items() if u in known}, **kept}
        self.next_state = {"validators": kept, "lastmod": newest.isoformat() if newest else None}

    # ---- pages ------------------------------------------------------------------------------

    def _page(self, url: str, lastmod: datetime | None, cached: dict | None):
        """(record or None when gone, validators to keep)."""
        headers = {}
        if cached:
            if cached.get("etag"):
                headers["If-None-Match"] = cached["etag"]
            if cached.get("last_modified"):
                headers["If-Modified-Since"] = cached["last_modified"]
        try:
            result = self._http().get(url, headers=headers, max_bytes=self.max_document_bytes)
        except SourceNotAllowed as exc:
            return SourceSkip(url, str(exc)), None
        except ResponseTooLarge as exc:
            return SourceSkip(url, too_large(exc.limit, exc.size)), None
        if result.status == 304:
            return (SourceUnchanged(url), cached) if cached else (SourceSkip(url, "HTTP 304 to an unconditional GET"), None)
        if result.status in GONE:
            return None, None
        if not result.ok:
            return SourceSkip(url, f"HTTP {result.status}"), None
        media_type = result.headers.get("Content-Type", "text/html").split(";")[0].strip().lower()
        extractor = _EXTRACTORS.get(media_type)
        if extractor is None:
            return SourceSkip(url, f"content type {media_type} is not text or HTML"), None
        record = SourceDocument(
            key=url,
            uri=url,
            raw=result.content,
            updated_at=lastmod or http_date(result.headers.get("Last-Modified")),
            extractor=extractor(urlsplit(url).path or url),
            fields=document_fields({"host": urlsplit(url).hostname}),
        )
        kept = {"etag": result.headers.get("ETag"), "last_modified": result.headers.get("Last-Modified")}
        return record, {k: v for k, v in kept.items() if v} or None

    # ---- sitemaps ---------------------------------------------------------------------------

    def _entries(self) -> dict[str, datetime | None]:
        """Every page URL (sitemaps expanded, first occurrence kept) with its ``lastmod``."""
        entries: dict[str, datetime | None] = {}
        for url in self.urls:
            for page, lastmod in self._sitemap(url) if is_sitemap(url) else [(url, None)]:
                entries.setdefault(page, lastmod)
        return entries

    def _sitemap(self, url: str, nested: bool = False) -> list[tuple[str, datetime | None]]:
        result = self._http().get(url, headers={"Accept": "application/xml, text/xml"})
        if not result.ok:
            raise SourceUnavailable(f"sitemap {url} answered HTTP {result.status}: nothing was archived")
        root = _parse_xml(url, result)
        tag = root.tag.rsplit("}", 1)[-1]
        items = [
            (loc.strip(), parse_time(_child_text(item, "lastmod")))
            for item in root
            if (loc := _child_text(item, "loc"))
        ]
        if tag == "urlset":
            return items
        if tag == "sitemapindex" and not nested:
            return [entry for child, _ in items for entry in self._sitemap(child, nested=True)]
        raise SourceUnavailable(f"sitemap {url}: root element <{tag}> is not <urlset> or <sitemapindex> (one level)")

    def _http(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(
                self._policy or HttpPolicy.from_env(), name="http source", log=self.log, sleep=self._sleep
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def is_sitemap(url: str) -> bool:
    return urlsplit(url).path.lower().endswith(".xml")


def parse_location(location: str) -> tuple[str, ...]:
    urls = tuple(dict.fromkeys(location.split()))
    if not urls:
        raise ValueError("invalid http source: give one or more URLs (pages, or sitemaps ending in .xml)")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid http source URL {url!r}: expected http(s)://host/...")
    return urls


def _parse_xml(url: str, result: HttpResult) -> ET.Element:
    if b"<!DOCTYPE" in result.content[:2048] or b"<!ENTITY" in result.content:
        raise SourceUnavailable(f"sitemap {url}: a DOCTYPE or entity declaration is refused")
    try:
        return ET.fromstring(result.content)
    except ET.ParseError as exc:
        raise SourceUnavailable(f"sitemap {url} is not valid XML: {exc}") from None


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if child.tag.rsplit("}", 1)[-1] == name and child.text:
            return child.text.strip()
    return None

