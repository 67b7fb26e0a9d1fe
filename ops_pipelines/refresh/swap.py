"""Put a generation behind the live alias (swap or rollback) and drop the ones beyond retention.

The metadata DB records the new live generation in one transaction. On the embedded engine that
record is the alias (``vectors.serving``); on a Qdrant server the alias then moves in one atomic
alias update, and if the process dies between the two, the alias still serves the old, complete
generation and the next swap, rollback or sync moves it to the recorded one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ops_pipelines.errors import OperatorError
from ops_pipelines.kb import Container, Generation, GenerationNotFound, KnowledgeBase
from ops_pipelines.kb.generations import BUILDING, DROPPED, LIVE, RETIRED
from ops_pipelines.vectors import VectorStore, alias_name
from ops_pipelines.vectors.serving import publish, serving_collection

_log = logging.getLogger(__name__)


class NothingToRollBack(OperatorError, LookupError):
    pass


@dataclass
class SwapReport:
    alias: str
    live: Generation
    previous: Generation | None
    dropped: list[str] = field(default_factory=list)


def swap_to(
    kb: KnowledgeBase,
    store: VectorStore,
    container: Container,
    generation: Generation,
    retention: int | None = 2,
    log: logging.Logger = _log,
) -> SwapReport:
    """Make ``generation`` live: DB record, then the alias; then apply ``retention`` (if any)."""
    if store.collection_dimension(generation.collection) is None:
        raise GenerationNotFound(
            f"cannot put {generation.collection} live: the collection does not exist in Qdrant"
        )
    previous = kb.activate_generation(container.id, generation.number)
    alias = alias_name(container.slug)
    publish(store, container, generation.collection)
    log.info("alias %s -> %s (was %s)", alias, generation.collection, previous.collection if previous else None)
    live = kb.generation(container.id, generation.number)
    dropped = prune_generations(kb, store, container, retention, log=log) if retention else []
    return SwapReport(alias, live, previous, dropped)


def rollback(
    kb: KnowledgeBase,
    store: VectorStore,
    container: Container,
    to_generation: int | None = None,
    log: logging.Logger = _log,
) -> SwapReport:
    """Point the alias back at ``to_generation``, by default the generation live before this one.

    No retention here: the generation rolled back from stays, so rolling forward again is one
    more rollback. The next sync brings the rolled-back generation up to date with the chunks.
    """
    generations = kb.generations(container.id)
    if to_generation is None:
        retired = [g for g in generations if g.state == RETIRED and store.collection_dimension(g.collection)]
        if not retired:
            raise NothingToRollBack(
                f"container {container.slug!r} has no retired generation to roll back to "
                f"(generations: {_describe(generations) or 'none'}): only one that a refresh replaced and "
                f"its --retention / retention kept can be put back (ops-pipelines generations {container.slug})"
            )
        target = max(retired, key=_last_served)
    else:
        target = next((g for g in generations if g.number == to_generation), None)
        if target is None or target.state in (DROPPED, BUILDING):
            raise NothingToRollBack(
                f"container {container.slug!r} cannot roll back to generation {to_generation}: "
                f"generations are {_describe(generations) or 'none'}; name a retired one with --to / to_generation"
            )
    return swap_to(kb, store, container, target, retention=None, log=log)


def prune_generations(
    kb: KnowledgeBase,
    store: VectorStore,
    container: Container,
    retention: int,
    log: logging.Logger = _log,
    dry_run: bool = False,
) -> list[str]:
    """Keep the live generation and the ``retention - 1`` retired ones served most recently; drop the rest,
    and any shadow older than the live generation (an abandoned build). Returns dropped names
    (with ``dry_run``, the names it would drop, and nothing is dropped)."""
    if retention < 1:
        raise ValueError("retention must keep at least the live generation (retention >= 1)")
    generations = kb.generations(container.id)
    live = next((g for g in generations if g.state == LIVE), None)
    if live is None:
        return []
    serving = serving_collection(kb, store, container)
    retired = sorted((g for g in generations if g.state == RETIRED), key=_last_served, reverse=True)
    doomed = retired[retention - 1 :] + [g for g in generations if g.state == BUILDING and g.number < live.number]
    dropped = []
    for g in doomed:
        if g.collection in (serving, live.collection):
            log.warning("not dropping %s: the alias serves it", g.collection)
            continue
        dropped.append(g.collection)
        if dry_run:
            log.info("would drop generation %d (%s) beyond retention %d", g.number, g.collection, retention)
            continue
        store.drop_collection(g.collection)
        kb.mark_generation_dropped(container.id, g.number)
        log.info("dropped generation %d (%s) beyond retention %d", g.number, g.collection, retention)
    return dropped


def _last_served(g: Generation):
    return (g.activated_at, g.number)


def _describe(generations: list[Generation]) -> str:
    return ", ".join(f"g{g.number} {g.state} ({g.embedder_version})" for g in generations)
