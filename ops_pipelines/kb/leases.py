"""One writing operation at a time per container, however launched, across processes and hosts.

Every operation that writes a container holds its lease (``container:<id>``) from before it reads
anything until it is done; an operation that replaces everything (restore) holds the whole-KB
lease (``kb``), which it takes first and then waits until no container lease is held, while
container writers that find it held give their own lease back and wait. Different containers are
written at the same time.

A lease is a row of the metadata DB (``lease_rows``): taken by an INSERT, or by a compare-and-swap
on the old token of a lease that expired or whose holder is a dead process on this same host. A
daemon thread renews it every third of its ttl, so a long operation keeps it and a killed one
loses it within the ttl (at once on its own host). A holder paused past its ttl may find its lease
taken: it learns at its next ``Lease.check()`` and at the end of the block (``LeaseLost``).

Nested use by one operation (the same holder, in the same process, in any of its threads) shares
the lease it holds; the last block to leave releases it.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ops_pipelines import settings
from ops_pipelines.errors import VectorStoreBusy
from ops_pipelines.kb import lease_rows, schema
from ops_pipelines.kb.lease_rows import CONTAINER_PREFIX, KB_KEY
from ops_pipelines.kb.source_state import as_utc

_log = logging.getLogger(__name__)
_MAX_PAUSE = 1.0  # seconds between two attempts, at most


class LeaseLost(VectorStoreBusy):
    """The lease was taken over while held (its holder went unrenewed past the ttl)."""


def holder_for(run_id: str | None) -> str:
    """The holder name of a lease: the Dagster run id inside a run (``context.run_id``), else
    ``pid N`` (a CLI command, a script)."""
    return run_id or f"pid {os.getpid()}"


@dataclass(frozen=True)
class LeaseInfo:
    key: str
    holder: str
    host: str
    pid: int
    acquired_at: datetime
    expires_at: datetime
    # expired, or held by a dead process of this host: its holder was killed while writing
    abandoned: bool = False


class Lease:
    """A held lease, renewed in the background until released."""

    def __init__(self, engine: Engine, key: str, holder: str, token: str, ttl: float):
        self.engine, self.key, self.holder, self.token, self.ttl = engine, key, holder, token, ttl
        self._lost = False
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{key}", daemon=True)
        self._renewer.start()

    def check(self) -> None:
        """Raise ``LeaseLost`` if another holder took the lease over: stop before writing more."""
        if self._lost:
            raise LeaseLost(
                f"the lease {self.key} of {self.holder} was taken over by another operation after it went "
                f"unrenewed for its ttl of {self.ttl:g} s; what this operation wrote since may interleave "
                "with the other's writes: run it again once the other is done"
            )

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if lease_rows.renew(self.engine, self.key, self.token, self.ttl):
                    continue
            except SQLAlchemyError as exc:
                _log.warning("lease %s: renewal failed, retrying: %s", self.key, exc)
                continue
            self._lost = True
            _log.error("lease %s of %s was taken over by another operation", self.key, self.holder)
            return

    def _release(self) -> None:
        self._stop.set()
        self._renewer.join()
        try:
            lease_rows.release(self.engine, self.key, self.token)
        except SQLAlchemyError as exc:  # never mask the operation's own outcome
            _log.warning("lease %s: release failed, it expires within %g s: %s", self.key, self.ttl, exc)


@dataclass
class _Holding:
    """A lease of this process and the blocks using it: the last one out releases it."""

    lease: Lease
    pid: int  # a forked child inherits the registry, not the holding
    users: int = 1


_holdings: dict[tuple[str, str, str], _Holding] = {}
_holdings_lock = threading.Lock()


class LeaseRecords:
    """Mixed into ``KnowledgeBase``: the container and whole-KB leases."""

    engine: Engine
    url: str

    def container_lease(
        self, container_id: str, holder: str, *, wait_seconds: float | None = None, ttl_seconds: float | None = None
    ):
        """Hold the container's lease for the block; ``VectorStoreBusy`` naming the holder if it
        stays held for ``wait_seconds`` (default ``OPS_LEASE_WAIT_SECONDS``)."""
        return self._held(CONTAINER_PREFIX + container_id, holder, wait_seconds, ttl_seconds)

    def kb_lease(self, holder: str, *, wait_seconds: float | None = None, ttl_seconds: float | None = None):
        """Hold the whole-KB lease for the block, once no container lease of another holder is
        left; the wait for both shares ``wait_seconds``."""
        return self._held(KB_KEY, holder, wait_seconds, ttl_seconds)

    def leases(self) -> list[LeaseInfo]:
        """Every lease row, abandoned ones included (until taken over: a killed holder's stays)."""
        claimant = lease_rows.this_process(holder_for(None))
        with self.engine.connect() as conn:
            now = lease_rows.db_now(conn)
        return [
            LeaseInfo(
                r.key, r.holder, r.host, r.pid, as_utc(r.acquired_at), as_utc(r.expires_at),
                abandoned=lease_rows.takeable(r, claimant, now),
            )
            for r in lease_rows.all_rows(self.engine)
        ]

    @contextmanager
    def _held(self, key: str, holder: str, wait: float | None, ttl: float | None) -> Iterator[Lease]:
        slot = (self.url, key, holder)
        with _holdings_lock:
            holding = _holdings.get(slot)
            if holding is not None and holding.pid == os.getpid():
                holding.users += 1
            else:
                holding = None
        if holding is None:
            lease = self._take(key, holder, settings.lease_wait_seconds() if wait is None else wait, ttl)
            holding = _Holding(lease, os.getpid())
            with _holdings_lock:
                _holdings[slot] = holding
        try:
            yield holding.lease
        finally:
            with _holdings_lock:
                holding.users -= 1
                last = holding.users == 0
                if last and _holdings.get(slot) is holding:
                    del _holdings[slot]
            if last:
                holding.lease._release()
        holding.lease.check()

    def _take(self, key: str, holder: str, wait: float, ttl: float | None) -> Lease:
        ttl = settings.lease_ttl_seconds() if ttl is None else ttl
        claimant, token = lease_rows.this_process(holder), uuid.uuid4().hex
        deadline, pause = time.monotonic() + wait, 0.02
        while (blocking := lease_rows.try_take(self.engine, key, claimant, token, ttl)) is not None:
            if time.monotonic() >= deadline:
                raise self._busy(key, blocking, wait)
            pause = _pause(deadline, pause)
        lease = Lease(self.engine, key, holder, token, ttl)
        if key == KB_KEY:
            try:
                while writers := lease_rows.held_container_rows(self.engine, claimant):
                    if time.monotonic() >= deadline:
                        raise self._busy(key, writers[0], wait)
                    pause = _pause(deadline, pause)
            except BaseException:
                lease._release()
                raise
        return lease

    def _busy(self, key: str, row: Row, waited: float) -> VectorStoreBusy:
        held = (
            f"{self._what(row.key)} is being written by {_who(row)}"
            if row.key.startswith(CONTAINER_PREFIX)
            else f"the whole knowledge base is held by {_who(row)}"
        )
        why = "" if row.key == key else f"{self._what(key)} cannot be taken: "
        return VectorStoreBusy(
            f"{why}{held} since {_utc(row.acquired_at)} (lease {row.key}, expires {_utc(row.expires_at)} "
            f"unless renewed); waited {waited:g} s. Retry once that operation is done, or wait longer with "
            "OPS_LEASE_WAIT_SECONDS. A killed holder's lease is taken over once it expires, or at once "
            "from its own host"
        )

    def _what(self, key: str) -> str:
        if key == KB_KEY:
            return "the whole knowledge base"
        container_id = key.removeprefix(CONTAINER_PREFIX)
        c = schema.containers.c
        with self.engine.connect() as conn:
            slug = conn.execute(select(c.slug).where(c.id == container_id)).scalar()
        return f"container {slug!r}" if slug else f"container {container_id}"


def _who(row: Row) -> str:
    where = f"pid {row.pid} on host {row.host}"
    return where if row.holder == f"pid {row.pid}" else f"run {row.holder} ({where})"


def _utc(value: datetime) -> str:
    return f"{as_utc(value):%Y-%m-%d %H:%M:%S} UTC"


def _pause(deadline: float, pause: float) -> float:
    """Sleep a jittered ``pause`` (never past the deadline); the next, doubled up to a second."""
    time.sleep(max(0.0, min(pause * random.uniform(0.5, 1.0), deadline - time.monotonic())))
    return min(pause * 2, _MAX_PAUSE)
