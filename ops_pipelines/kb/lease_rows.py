"""The rows of the ``leases`` table and the rule for taking one over (see ``kb.leases``).

Every attempt to take a lease is one short transaction serialised with every other attempt on the
database (an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite). That is what lets a
container writer that looks for the whole-KB lease and a restore that looks for container leases
never both miss each other: whichever attempt comes second sees the first one's committed row.
Time is the database server's on PostgreSQL, so hosts with skewed clocks agree on expiry.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, Row, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from ops_pipelines.kb import schema
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.kb.source_state import as_utc

KB_KEY = "kb"
CONTAINER_PREFIX = "container:"
_ATTEMPT_LOCK = 727275  # pg_advisory_xact_lock key of lease attempts (727274 is the migrator's)


@dataclass(frozen=True)
class Claimant:
    """Who asks for a lease: the holder's name and the process it runs in."""

    holder: str
    host: str
    pid_scope: str
    pid: int


def this_process(holder: str) -> Claimant:
    return Claimant(holder, socket.gethostname(), pid_scope(), os.getpid())


@cache
def pid_scope() -> str:
    """The kernel boot and pid namespace this process's pid is a number in: two containers can
    share a host name, never both. Elsewhere than Linux, the host name."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return f"host {socket.gethostname()}"


def pid_alive(pid: int) -> bool:
    """A zombie (killed, not yet reaped by its parent) counts as dead: it writes nothing more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def takeable(row: Row, claimant: Claimant, now: datetime) -> bool:
    """An expired lease, or one whose holder is a dead process of the claimant's own pid scope."""
    if as_utc(row.expires_at) <= now:
        return True
    return row.pid_scope == claimant.pid_scope and not pid_alive(row.pid)


def try_take(engine: Engine, key: str, claimant: Claimant, token: str, ttl: float) -> Row | None:
    """Take ``key`` under ``token``: None if taken, else the row in the way (the key's holder, or
    for a container key the whole-KB lease of another holder, in which case nothing is taken)."""
    with engine.connect() as conn, conn.begin() as transaction:
        _serialize(conn)
        now = db_now(conn)
        blocking = _take(conn, key, claimant, token, now, ttl)
        if blocking is None and key != KB_KEY:
            kb = _row(conn, KB_KEY)
            if kb is not None and kb.holder != claimant.holder and not takeable(kb, claimant, now):
                blocking = kb
        if blocking is not None:
            transaction.rollback()
        return blocking


def _take(conn: Connection, key: str, claimant: Claimant, token: str, now: datetime, ttl: float) -> Row | None:
    values = dict(
        key=key,
        holder=claimant.holder,
        host=claimant.host,
        pid_scope=claimant.pid_scope,
        pid=claimant.pid,
        token=token,
        acquired_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    while True:
        if conn.execute(dialect_insert(schema.leases).values(**values).on_conflict_do_nothing()).rowcount:
            return None
        row = _row(conn, key)
        if row is None:
            continue  # released since the insert: insert again
        if not takeable(row, claimant, now):
            return row
        swapped = conn.execute(
            update(schema.leases).where(schema.leases.c.key == key, schema.leases.c.token == row.token).values(**values)
        )
        if swapped.rowcount:
            return None


def renew(engine: Engine, key: str, token: str, ttl: float) -> bool:
    """Push the expiry of our holding ``ttl`` from now; False if the lease is no longer ours."""
    lease = schema.leases.c
    with engine.begin() as conn:
        expires = db_now(conn) + timedelta(seconds=ttl)
        changed = conn.execute(
            update(schema.leases).where(lease.key == key, lease.token == token).values(expires_at=expires)
        )
        return changed.rowcount == 1


def release(engine: Engine, key: str, token: str) -> None:
    """Delete our holding (a lease taken over since is someone else's and stays)."""
    lease = schema.leases.c
    with engine.begin() as conn:
        conn.execute(delete(schema.leases).where(lease.key == key, lease.token == token))


def held_container_rows(engine: Engine, claimant: Claimant) -> list[Row]:
    """Container leases held by others than ``claimant.holder`` and not takeable."""
    lease = schema.leases.c
    with engine.connect() as conn:
        now = db_now(conn)
        rows = conn.execute(
            select(schema.leases)
            .where(lease.key.startswith(CONTAINER_PREFIX), lease.holder != claimant.holder)
            .order_by(lease.acquired_at)
        ).all()
    return [row for row in rows if not takeable(row, claimant, now)]


def all_rows(engine: Engine) -> list[Row]:
    with engine.connect() as conn:
        return conn.execute(select(schema.leases).order_by(schema.leases.c.key)).all()


def db_now(conn: Connection) -> datetime:
    if conn.dialect.name == "postgresql":
        return conn.execute(select(func.clock_timestamp())).scalar_one()
    return utcnow()  # SQLite is a file on one host: the local clock is the only clock


def _row(conn: Connection, key: str) -> Row | None:
    return conn.execute(select(schema.leases).where(schema.leases.c.key == key)).first()


def _serialize(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_ATTEMPT_LOCK)))
    else:
        # the write lock now, not at the first write: attempts queue (busy_timeout) in order
        conn.exec_driver_sql("BEGIN IMMEDIATE")
