"""Chunkers: how a document's text is cut into the pieces that are embedded.

- ``para-800@1`` (``ParagraphChunker``): paragraphs packed up to 800 characters, longer ones cut
  at whitespace. Characters are not tokens: about 8% of technical prose cut this way is longer
  than all-MiniLM-L6-v2's 256-token window, and the model never reads the rest.
- token chunkers (``TokenChunker``, declared in the embedder registry): paragraphs packed up to
  ``max_tokens`` tokens counted by the model's own tokenizer, a heading kept with the paragraph
  it heads, a paragraph longer than the budget cut at a sentence end (else a space) with
  ``overlap`` tokens of the piece before repeated at the start of the next.

A chunk's hash is the sha256 of its chunker's name and its text: the embedding cache's key, so a
chunk cut by two chunkers is two cache entries, never one vector for two meanings.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

PARAGRAPH_CHUNKER = "para-800@1"
MAX_CHARS = 800
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_HEADING = re.compile(r"#{1,6}\s")
_SENTENCE_END = re.compile(r"[.!?:;]\s|\n")


class Chunker(Protocol):
    name: str

    def cut(self, text: str) -> list[str]: ...


def chunk_hash(text: str, chunker: str = PARAGRAPH_CHUNKER) -> str:
    return hashlib.sha256(f"{chunker}\0{text}".encode()).hexdigest()


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


@dataclass(frozen=True)
class ParagraphChunker:
    name: str = PARAGRAPH_CHUNKER
    max_chars: int = MAX_CHARS

    def cut(self, text: str) -> list[str]:
        return chunk_text(text, self.max_chars)


@lru_cache(maxsize=8)
def load_tokenizer(path: str):
    """A Hugging Face ``tokenizer.json`` (or a model folder holding one), with truncation and
    padding off, so that it counts every token of a text."""
    from tokenizers import Tokenizer

    file = Path(path)
    if file.is_dir():
        file = file / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(tokenizer, texts: list[str], special: bool = False) -> list[int]:
    return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=special)]


@dataclass(frozen=True)
class TokenChunker:
    name: str
    tokenizer_path: str
    max_tokens: int
    overlap: int = 0

    @property
    def tokenizer(self):
        return load_tokenizer(self.tokenizer_path)

    def cut(self, text: str) -> list[str]:
        blocks = _blocks(text)
        if not blocks:
            return []
        counts = count_tokens(self.tokenizer, blocks)
        chunks: list[str] = []
        current, current_tokens = "", 0
        for block, tokens in zip(blocks, counts, strict=True):
            if tokens > self.max_tokens:
                if current:
                    chunks.append(current)
                    current, current_tokens = "", 0
                chunks += self._split(block, self.max_tokens)
            elif current and current_tokens + tokens + 1 <= self.max_tokens:
                current, current_tokens = f"{current}\n\n{block}", current_tokens + tokens + 1
            else:
                if current:
                    chunks.append(current)
                current, current_tokens = block, tokens
        if current:
            chunks.append(current)
        return self._fitted(chunks)

    def _split(self, block: str, budget: int) -> list[str]:
        """A block longer than ``budget`` tokens, in pieces that end at a sentence end, else a
        space, in the budget's second half; each next piece starts ``overlap`` tokens back (at
        the start of a word)."""
        starts = [start for start, _ in self.tokenizer.encode(block, add_special_tokens=False).offsets]
        pieces, first = [], 0
        while first < len(starts):
            last = first + budget  # the first token left out of this piece
            if last >= len(starts):
                pieces.append(block[starts[first] :])
                break
            floor, limit = starts[first + budget // 2], starts[last]
            ends = [m.end() for m in _SENTENCE_END.finditer(block, floor, limit)]
            cut = ends[-1] if ends else (block.rfind(" ", floor, limit) + 1 or limit)
            pieces.append(block[starts[first] : cut])
            after = bisect.bisect_left(starts, cut)
            following = max(first + 1, after - self.overlap)
            while first + 1 < following < after and not block[starts[following] - 1].isspace():
                following -= 1
            first = following
        return [piece.strip() for piece in pieces if piece.strip()]

    def _fitted(self, chunks: list[str]) -> list[str]:
        """Each chunk counted again as one text (a token at a join or a cut can differ from the
        sum of its parts); one still over the budget is cut again on smaller budgets."""
        out = []
        for chunk, tokens in zip(chunks, count_tokens(self.tokenizer, chunks), strict=True):
            budget = self.max_tokens
            pieces = [chunk] if tokens <= budget else []
            while not pieces:
                budget = max(1, budget - max(tokens - self.max_tokens, 8))
                pieces = self._split(chunk, budget)
                if max(count_tokens(self.tokenizer, pieces)) > self.max_tokens:
                    pieces = []
            out += pieces
        return out


def _blocks(text: str) -> list[str]:
    """Paragraphs, each heading joined to the paragraph after it."""
    blocks: list[str] = []
    heading = ""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if heading:
            paragraph, heading = f"{heading}\n\n{paragraph}", ""
        if _HEADING.match(paragraph) and "\n" not in paragraph:
            heading = paragraph
            continue
        blocks.append(paragraph)
    if heading:
        blocks.append(heading)
    return blocks
