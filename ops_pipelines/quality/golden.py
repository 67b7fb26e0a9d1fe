"""Golden query sets: the queries a container must answer, each with the documents (source keys)
that answer it.

A set is JSONL, one query a line: ``{"query": "...", "relevant": ["a.md", "b.md"]}``, or with graded
relevance ``{"query": "...", "relevant": {"a.md": 2, "b.md": 1}}`` (0 counts as not relevant);
an optional ``"id"`` names the query in reports (default: its line number). A set is identified
by the sha256 of its text, so registering the same file twice is one version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace

from ops_pipelines.errors import OperatorError

MAX_QUERIES = 10_000


class InvalidGoldenSet(OperatorError, ValueError):
    pass


@dataclass(frozen=True)
class GoldenQuery:
    id: str
    query: str
    relevant: dict[str, int]  # source key -> grade (> 0)


@dataclass(frozen=True)
class GoldenSet:
    queries: tuple[GoldenQuery, ...]
    content_hash: str
    synthetic: bool = False  # drawn from the container's own documents, not written by anyone

    @property
    def label(self) -> str:
        return f"synthetic golden set ({len(self.queries)} document titles)" if self.synthetic else (
            f"golden set {self.content_hash[:12]} ({len(self.queries)} queries)"
        )

    @property
    def source_keys(self) -> set[str]:
        return {key for q in self.queries for key in q.relevant}

    def restricted(self, keep: Callable[[GoldenQuery], bool]) -> GoldenSet:
        """The queries ``keep`` keeps, under the set's own version."""
        return replace(self, queries=tuple(q for q in self.queries if keep(q)))


def parse_golden_set(text: str, origin: str = "golden set") -> GoldenSet:
    """The set in ``text``; ``InvalidGoldenSet`` naming the line and what is wrong with it."""
    queries: list[GoldenQuery] = []
    ids: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{origin} line {number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InvalidGoldenSet(f"{where}: not JSON ({exc})") from None
        if not isinstance(record, dict) or set(record) - {"id", "query", "relevant"}:
            raise InvalidGoldenSet(f"{where}: must be an object with query, relevant and optionally id")
        query = record.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidGoldenSet(f"{where}: query must be a non-empty string")
        query_id = str(record.get("id", number))
        if query_id in ids:
            raise InvalidGoldenSet(f"{where}: id {query_id!r} repeats")
        ids.add(query_id)
        queries.append(GoldenQuery(query_id, query, _relevant(record.get("relevant"), where)))
        if len(queries) > MAX_QUERIES:
            raise InvalidGoldenSet(f"{origin}: more than {MAX_QUERIES} queries")
    if not queries:
        raise InvalidGoldenSet(f"{origin}: no queries (one JSON object a line: {{\"query\": ..., \"relevant\": [...]}})")
    return GoldenSet(tuple(queries), hashlib.sha256(text.encode()).hexdigest())


def _relevant(value, where: str) -> dict[str, int]:
    if isinstance(value, list) and value and all(isinstance(key, str) and key for key in value):
        return dict.fromkeys(value, 1)
    if isinstance(value, dict) and all(
        isinstance(key, str) and key and isinstance(grade, int) and not isinstance(grade, bool) and grade >= 0
        for key, grade in value.items()
    ):
        graded = {key: grade for key, grade in value.items() if grade > 0}
        if graded:
            return graded
    raise InvalidGoldenSet(
        f"{where}: relevant must be a list of source keys, or an object of source key -> grade (an integer >= 0) "
        "with at least one grade above 0"
    )
