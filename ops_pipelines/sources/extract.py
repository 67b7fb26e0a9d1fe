"""Text extraction from the file types the folder source reads."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from ops_pipelines.sources.base import Extracted, UnreadableDocument

_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n\s*\n")


def decode_utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableDocument(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None


def _fallback_title(key: str) -> str:
    return PurePosixPath(key).stem.replace("-", " ").replace("_", " ").strip() or key


def markdown(key: str):
    def extract(raw: bytes) -> Extracted:
        text = decode_utf8(raw)
        heading = _HEADING.search(text)
        return Extracted(heading.group(1) if heading else _fallback_title(key), text.strip())

    return extract


def plain_text(key: str):
    def extract(raw: bytes) -> Extracted:
        return Extracted(_fallback_title(key), decode_utf8(raw).strip())

    return extract


_BLOCKS = [
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "li", "main", "nav", "ol", "p", "pre",
    "section", "table", "td", "th", "tr", "ul",
]


def html(key: str):
    """Visible text, one paragraph per block element, whitespace inside a paragraph folded."""
    from bs4 import BeautifulSoup  # here: a sync of Markdown and text files starts without it

    def extract(raw: bytes) -> Extracted:
        soup = BeautifulSoup(raw, "html.parser")
        for tag in soup(["script", "style", "noscript", "template"]):
            tag.decompose()
        title_tag = soup.title or soup.find("h1")
        title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
        body = soup.body or soup
        for tag in body.find_all(_BLOCKS):
            tag.insert_before("\n\n")
            tag.insert_after("\n\n")
        for tag in body.find_all("br"):
            tag.replace_with("\n\n")
        paragraphs = (" ".join(p.split()) for p in _BLANK_RUNS.split(body.get_text()))
        return Extracted(title or _fallback_title(key), "\n\n".join(p for p in paragraphs if p))

    return extract


EXTRACTORS = {
    ".md": markdown,
    ".markdown": markdown,
    ".txt": plain_text,
    ".html": html,
    ".htm": html,
}
