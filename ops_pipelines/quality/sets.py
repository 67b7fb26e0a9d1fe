"""A container's golden set in the metadata DB: registered once checked against the container's
documents, read back as the latest version."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ops_pipelines.kb import Container, KnowledgeBase
from ops_pipelines.quality.golden import GoldenSet, InvalidGoldenSet, parse_golden_set


def register_golden_set(kb: KnowledgeBase, container: Container, text: str, origin: str) -> tuple[GoldenSet, bool]:
    """Check the set (its JSON, and that every source key it names is an active document of the
    container) and record it as the container's latest; returns it and whether it was new."""
    golden = parse_golden_set(text, origin)
    lacking = lacking_documents(kb, container, golden)
    if lacking:
        shown = ", ".join(lacking[:10]) + (f" and {len(lacking) - 10} more" if len(lacking) > 10 else "")
        raise InvalidGoldenSet(
            f"{origin} names {len(lacking)} source key(s) that container {container.slug!r} has no active document "
            f"for: {shown}. Use the keys `ops-pipelines search` shows in brackets; nothing was registered"
        )
    added = kb.put_golden_set(container.id, golden.content_hash, text, len(golden.queries))
    return golden, added


def lacking_documents(kb: KnowledgeBase, container: Container, golden: GoldenSet) -> list[str]:
    """The source keys the set names that are no active document of the container, sorted."""
    states = kb.document_states(container.id, golden.source_keys)
    return sorted(key for key in golden.source_keys if key not in states or states[key].status != "active")


def current_golden_set(kb: KnowledgeBase, container: Container) -> GoldenSet | None:
    record = kb.golden_set(container.id)
    return None if record is None else parse_golden_set(record.body, f"golden set {record.content_hash[:12]}")


def slice_membership(
    kb: KnowledgeBase, container: Container, golden: GoldenSet, where: Mapping[str, str]
) -> Callable[[str], bool]:
    """Whether a document the set names is in the slice ``where`` (payload key -> value, keys
    ``fields.NAME``): its fields in the metadata DB have every value."""
    states = kb.document_states(container.id, golden.source_keys)
    wanted = {key.removeprefix("fields."): value for key, value in where.items()}

    def in_slice(source_key: str) -> bool:
        state = states.get(source_key)
        fields = (state.fields or {}) if state is not None else {}
        return all(fields.get(name) == value for name, value in wanted.items())

    return in_slice
