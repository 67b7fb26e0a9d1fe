"""Paragraph-packing chunker: paragraphs are joined up to ``MAX_CHARS``, longer ones are cut at
whitespace. all-MiniLM-L6-v2 reads 256 word pieces, about 800-1000 characters of English."""

from __future__ import annotations

import hashlib
import re

CHUNKER_VERSION = "para-800@1"
MAX_CHARS = 800
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def chunk_hash(text: str) -> str:
    return hashlib.sha256(f"{CHUNKER_VERSION}\0{text}".encode()).hexdigest()


def _cut(paragraph: str, limit: int) -> list[str]:
    pieces = []
    while len(paragraph) > limit:
        cut = paragraph.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(paragraph[:cut].strip())
        paragraph = paragraph[cut:].strip()
    if paragraph:
        pieces.append(paragraph)
    return pieces


def chunk_text(text: str, limit: int = MAX_CHARS) -> list[str]:
    chunks: list[str] = []
    current = ""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        for piece in _cut(paragraph.strip(), limit):
            if current and len(current) + 2 + len(piece) <= limit:
                current = f"{current}\n\n{piece}"
            else:
                if current:
                    chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return chunks
