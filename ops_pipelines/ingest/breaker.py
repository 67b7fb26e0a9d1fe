"""A circuit breaker per container source, kept in the knowledge base so it holds across runs.

Closed: syncs run. Each sync that fails because its source could not be read
(``SourceUnavailable``, after the HTTP client's own retries) adds one to a count of consecutive
failures; at ``failures`` the breaker opens for ``cooldown``. Open: a sync fails at once with a
message saying why and until when, without contacting the source, and the change sensor
requests no run. Half-open (cool-down over): the next sync is a trial; success closes the
breaker, failure opens it again for another cool-down. ``ops-pipelines source reset`` closes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from ops_pipelines import settings
from ops_pipelines.ingest.documents import ArchiveRefused
from ops_pipelines.kb import Container, KnowledgeBase, SourceState
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.sources import SourceUnavailable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class SourceCircuitOpen(SourceUnavailable):
    """The breaker is open: the sync stops before any request."""


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 3
    cooldown: timedelta = timedelta(minutes=15)

    @classmethod
    def from_env(cls) -> BreakerPolicy:
        return cls(
            failures=settings.source_int("OPS_SOURCE_BREAKER_FAILURES", 3),
            cooldown=timedelta(seconds=settings.source_float("OPS_SOURCE_BREAKER_COOLDOWN_S", 900.0)),
        )


def breaker_status(state: SourceState, policy: BreakerPolicy, now: datetime) -> str:
    if state.opened_until is not None and now < state.opened_until:
        return OPEN
    if state.failures >= policy.failures:
        return HALF_OPEN
    return CLOSED


def open_message(container: Container, state: SourceState) -> str:
    last = state.last_failure_at.isoformat(timespec="seconds") if state.last_failure_at else "?"
    until = state.opened_until.isoformat(timespec="seconds") if state.opened_until else "?"
    return (
        f"circuit breaker open for container {container.slug!r} ({container.source_kind}:"
        f"{container.source_location}): {state.failures} syncs in a row could not read the source, "
        f"the last at {last}: {state.last_error}. No request is made before {until}; the first sync "
        f"after that is a trial. Once the source is fixed: ops-pipelines source reset {container.slug}"
    )


@contextmanager
def source_breaker(
    kb: KnowledgeBase,
    container: Container,
    policy: BreakerPolicy,
    now: Callable[[], datetime] = utcnow,
) -> Iterator[None]:
    """Guard one sync of ``container``'s source: fail fast while open, count the outcome."""
    state = kb.source_state(container.id)
    if breaker_status(state, policy, now()) == OPEN:
        raise SourceCircuitOpen(open_message(container, state))
    try:
        yield
    except SourceUnavailable as exc:
        failures = kb.record_source_failure(container.id, str(exc))
        if failures < policy.failures:
            raise
        until = now() + policy.cooldown
        kb.open_breaker(container.id, until)
        raise SourceUnavailable(
            f"{exc} [failure {failures} in a row: the circuit breaker is open until "
            f"{until.isoformat(timespec='seconds')}; syncs fail fast until then]"
        ) from exc
    except ArchiveRefused:  # the source was read; what it said was refused
        _close(kb, container, state)
        raise
    _close(kb, container, state)


def _close(kb: KnowledgeBase, container: Container, state: SourceState) -> None:
    if state.failures or state.opened_until is not None:
        kb.record_source_success(container.id)
