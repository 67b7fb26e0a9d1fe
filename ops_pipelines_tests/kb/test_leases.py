"""Container and whole-KB leases on SQLite and PostgreSQL, held by real processes
(``lease_holder``) that report on a pipe: turns, parallel containers, takeover of killed and
expired holders, renewal, the whole-KB lease, release on error, re-entry."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, inspect, update

from ops_pipelines import settings
from ops_pipelines.errors import VectorStoreBusy
from ops_pipelines.kb import KnowledgeBase, LeaseLost, holder_for, lease_rows, schema
from ops_pipelines.kb.lease_rows import KB_KEY, db_now, pid_alive
from ops_pipelines.kb.migrations import LATEST, MIGRATIONS

REPO = Path(__file__).resolve().parents[2]


class Holder:
    """A ``lease_holder`` process; its stdout is read a line at a time, each within a deadline."""

    def __init__(self, url: str, target: str, holder: str, wait: float, ttl: float, stderr: Path):
        self.stderr = stderr
        with open(stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ops_pipelines_tests.kb.lease_holder", url, target, holder, str(wait), str(ttl)],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._buffer = b""
        self._ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, word: str, within: float = 60) -> list[str]:
        """The next line, which must start with ``word``, split in (word, rest)."""
        line = self._line(time.monotonic() + within)
        assert line.split(" ", 1)[0] == word, f"expected {word!r}, got {line!r}; stderr: {self._err()}"
        return [*line.split(" ", 1), ""][:2]

    def ready(self) -> None:
        """Wait until it started (once)."""
        if not self._ready:
            self.expect("ready")
            self._ready = True

    def go(self, *, answer: bool = True) -> None:
        """Let it ask for its lease (and see that it does, unless not ``answer``)."""
        self.ready()
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        if answer:
            self.expect("trying")

    def outcome(self) -> str:
        """``held`` or ``busy``: how its ask ended."""
        line = self._line(time.monotonic() + 60)
        assert line.split(" ", 1)[0] in ("held", "busy"), f"{line!r}; stderr: {self._err()}"
        return line.split(" ", 1)[0]

    def take(self) -> None:
        self.go()
        self.expect("held")

    def busy(self, wait: float) -> str:
        """The ``busy`` message, after the process asked and waited at least ``wait``."""
        self.go()
        _, rest = self.expect("busy", within=wait + 60)
        waited, message = rest.split(" ", 1)
        assert float(waited) >= wait
        assert self.proc.wait(30) == 3
        return message

    def release(self) -> None:
        self.proc.stdin.write(b"release\n")
        self.proc.stdin.flush()
        self.expect("released")
        assert self.proc.wait(30) == 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.proc.stdin.close()
        self.proc.stdout.close()

    def _line(self, deadline: float) -> str:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"lease holder said nothing in time; so far {self._buffer!r}; stderr: {self._err()}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    pytest.fail(f"lease holder exited {self.proc.wait()}; stderr: {self._err()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _err(self) -> str:
        return self.stderr.read_text(errors="replace")[-3000:]


@pytest.fixture
def spawn(kb_url, tmp_path):
    """Start a lease holder process: ``spawn(container id or "kb", holder, wait=, ttl=)``."""
    started: list[Holder] = []

    def start(target: str, holder: str, wait: float = 0.0, ttl: float = 30.0) -> Holder:
        process = Holder(kb_url, target, holder, wait, ttl, tmp_path / f"holder-{len(started)}.err")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def docs(kb):
    return kb.add_container("docs", "folder", "/srv/docs", "hash-256@1")


@pytest.fixture
def wiki(kb):
    return kb.add_container("wiki", "folder", "/srv/wiki", "hash-256@1")


def _keys(kb: KnowledgeBase) -> dict[str, str]:
    return {lease.key: lease.holder for lease in kb.leases()}


def _until(condition, what: str, within: float = 30):
    deadline = time.monotonic() + within
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within} s")
        time.sleep(0.02)
    return value


def _foreign_lease(kb: KnowledgeBase, key: str, pid: int, seconds: float) -> None:
    """A lease row as a process on another host writes it."""
    with kb.engine.begin() as conn:
        now = db_now(conn)
        conn.execute(
            insert(schema.leases).values(
                key=key, holder="run-far", host="far-away", pid_scope="another-boot/pid:[4026531836]", pid=pid,
                token="f" * 32, acquired_at=now, expires_at=now + timedelta(seconds=seconds),
            )
        )


def test_writers_of_one_container_take_turns(kb, docs, spawn):
    first, refused = spawn(docs.id, "run-A"), spawn(docs.id, "run-B", wait=0.5)
    second = spawn(docs.id, "run-C", wait=60)
    first.take()

    message = refused.busy(wait=0.5)
    assert f"container 'docs' is being written by run run-A (pid {first.pid} on host " in message
    assert "since" in message and "waited 0.5 s" in message
    assert _keys(kb) == {f"container:{docs.id}": "run-A"}  # the failed attempt left nothing

    second.go()
    assert _keys(kb) == {f"container:{docs.id}": "run-A"}
    first.release()
    second.expect("held")
    assert _keys(kb) == {f"container:{docs.id}": "run-C"}


def test_different_containers_are_written_at_the_same_time(kb, docs, wiki, spawn):
    first, second = spawn(docs.id, "run-A"), spawn(wiki.id, "run-B")  # neither waits
    first.take()
    second.take()
    assert _keys(kb) == {f"container:{docs.id}": "run-A", f"container:{wiki.id}": "run-B"}


def test_a_killed_holder_is_taken_over_at_once_on_its_host(kb, docs, spawn):
    killed, heir = spawn(docs.id, "run-A", ttl=600), spawn(docs.id, "run-B", wait=60)
    killed.take()
    killed.proc.kill()  # SIGKILL, and not reaped: a zombie counts as dead

    heir.take()  # its wait ends long before the dead lease would expire
    assert _keys(kb) == {f"container:{docs.id}": "run-B"}


def test_a_foreign_hosts_lease_is_kept_until_it_expires(kb, docs, spawn):
    refused, heir = spawn(docs.id, "run-B"), spawn(docs.id, "run-C", wait=60)
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not pid_alive(gone.pid)  # dead here, but this pid is another host's
    refused.ready()  # so that it asks well within the lease's 2 s
    _foreign_lease(kb, f"container:{docs.id}", gone.pid, seconds=2)

    message = refused.busy(wait=0)
    assert f"is being written by run run-far (pid {gone.pid} on host far-away)" in message

    heir.take()
    assert _keys(kb) == {f"container:{docs.id}": "run-C"}


def test_a_long_holder_keeps_its_lease_past_its_ttl(kb, docs, spawn):
    ttl = 1.5
    holder, refused = spawn(docs.id, "run-A", ttl=ttl), spawn(docs.id, "run-B")
    holder.take()
    (lease,) = kb.leases()

    def past_two_ttls() -> bool:
        with kb.engine.connect() as conn:
            return db_now(conn) > lease.acquired_at + timedelta(seconds=2 * ttl)

    _until(past_two_ttls, "two ttls passed")
    (renewed,) = kb.leases()
    assert renewed.expires_at > lease.acquired_at + timedelta(seconds=2 * ttl)
    message = refused.busy(wait=0)
    assert "being written by run run-A" in message


def test_the_kb_lease_waits_for_container_writers_and_holds_off_new_ones(kb, docs, wiki, spawn):
    writer, impatient, restore = spawn(docs.id, "run-A"), spawn("kb", "run-R", wait=0.3), spawn("kb", "run-R", wait=60)
    refused, waiting = spawn(wiki.id, "run-B", wait=0.3), spawn(wiki.id, "run-C", wait=60)
    writer.take()

    message = impatient.busy(wait=0.3)
    assert message.startswith(
        "the whole knowledge base cannot be taken: container 'docs' is being written by run run-A"
    )
    assert _keys(kb) == {f"container:{docs.id}": "run-A"}  # the KB lease was given back

    restore.go()
    _until(lambda: _keys(kb).get("kb") == "run-R", "the KB lease taken, waiting for run-A")

    message = refused.busy(wait=0.3)
    assert message.startswith("container 'wiki' cannot be taken: the whole knowledge base is held by run run-R")
    assert _keys(kb) == {f"container:{docs.id}": "run-A", "kb": "run-R"}  # run-B gave its lease back
    waiting.go()

    writer.release()
    restore.expect("held")
    assert _keys(kb) == {"kb": "run-R"}
    restore.release()
    waiting.expect("held")
    assert _keys(kb) == {f"container:{wiki.id}": "run-C"}


def test_of_writers_asking_at_once_exactly_one_holds(kb, docs, spawn):
    """Three writers of one container and a restore, let go together, none waiting: one of them
    holds (a restore, or one writer), every other one is refused."""
    racers = [spawn(docs.id, f"run-{n}") for n in range(3)] + [spawn("kb", "run-R")]
    for racer in racers:
        racer.ready()
    for racer in racers:
        racer.go(answer=False)
    outcomes = []
    for racer in racers:
        racer.expect("trying")
        outcomes.append(racer.outcome())
    assert outcomes.count("held") == 1, outcomes
    (winner,) = (r for r, o in zip(racers, outcomes, strict=True) if o == "held")
    assert len(kb.leases()) == 1 and kb.leases()[0].pid == winner.pid


def test_a_restore_asking_while_a_writer_commits_waits_for_it(kb, docs, monkeypatch):
    """The writer stops between finding no whole-KB lease and committing its own, and the restore
    asks right then: attempts are serialised, so the restore sees the writer, not nothing."""
    checked, go_on, finish = threading.Event(), threading.Event(), threading.Event()
    found_by = lease_rows._row

    def row(conn, key):
        found = found_by(conn, key)
        if key == KB_KEY and threading.current_thread().name == "writer":
            checked.set()
            go_on.wait(30)
        return found

    monkeypatch.setattr(lease_rows, "_row", row)
    outcomes: dict[str, str] = {}

    def attempt(name: str, lease) -> None:
        try:
            with lease:
                outcomes[name] = "held"
                finish.wait(30)
        except VectorStoreBusy:
            outcomes[name] = "busy"

    writer = threading.Thread(target=attempt, args=("writer", kb.container_lease(docs.id, "run-A", wait_seconds=0)))
    restore = threading.Thread(target=attempt, args=("restore", kb.kb_lease("run-R", wait_seconds=0)))
    writer.name = "writer"
    writer.start()
    try:
        assert checked.wait(30)
        restore.start()
        restore.join(timeout=1)  # time for a restore that does not wait on the writer to get through
        go_on.set()
        _until(lambda: len(outcomes) == 2, "both asked")
        assert outcomes == {"writer": "held", "restore": "busy"}
    finally:
        go_on.set()
        finish.set()
        writer.join(30)
        restore.join(30)


def test_the_kb_holder_writes_containers_itself_and_nobody_else_does(kb, docs, wiki):
    with kb.kb_lease("run-R", wait_seconds=0):
        with kb.container_lease(docs.id, "run-R", wait_seconds=0):
            assert _keys(kb) == {"kb": "run-R", f"container:{docs.id}": "run-R"}
        with pytest.raises(VectorStoreBusy, match="the whole knowledge base is held by run run-R"):
            with kb.container_lease(wiki.id, "run-B", wait_seconds=0):
                pass
    assert _keys(kb) == {}


def test_the_same_holder_reenters_its_lease(kb, docs):
    key = f"container:{docs.id}"
    with kb.container_lease(docs.id, "run-A", wait_seconds=0) as outer:
        with kb.container_lease(docs.id, "run-A", wait_seconds=0) as inner:
            assert inner is outer
        assert _keys(kb) == {key: "run-A"}  # the inner block gave nothing back
        other = KnowledgeBase(kb.url)  # another handle of the same process and holder re-enters too
        try:
            with other.container_lease(docs.id, "run-A", wait_seconds=0) as again:
                assert again is outer
            with pytest.raises(VectorStoreBusy, match="run run-A"):
                with other.container_lease(docs.id, "run-B", wait_seconds=0):
                    pass
        finally:
            other.close()
    assert _keys(kb) == {}


def test_the_last_block_of_a_holder_to_leave_releases_its_lease(kb, docs):
    """A thread of the same operation still inside keeps the lease when the first block leaves."""
    inside, leave = threading.Event(), threading.Event()

    def worker() -> None:
        with kb.container_lease(docs.id, "run-A", wait_seconds=0):
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=worker)
    with kb.container_lease(docs.id, "run-A", wait_seconds=0):
        thread.start()
        assert inside.wait(30)
    try:
        assert _keys(kb) == {f"container:{docs.id}": "run-A"}
    finally:
        leave.set()
        thread.join(30)
    assert _keys(kb) == {}


def test_a_block_that_raises_releases_its_lease(kb, docs, spawn):
    with pytest.raises(RuntimeError, match="boom"), kb.container_lease(docs.id, "run-A", wait_seconds=0):
        raise RuntimeError("boom")
    assert _keys(kb) == {}
    spawn(docs.id, "run-B").take()  # no wait: the lease is free at once


def test_a_lease_taken_over_while_held_raises_lease_lost(kb, docs):
    key = f"container:{docs.id}"
    with pytest.raises(LeaseLost, match="taken over"):
        with kb.container_lease(docs.id, "run-A", wait_seconds=0, ttl_seconds=0.3) as lease:
            lease.check()  # held: no error
            with kb.engine.begin() as conn:  # as a taker does once the lease expired unrenewed
                taken = update(schema.leases).where(schema.leases.c.key == key)
                conn.execute(taken.values(token="t" * 32, holder="run-B"))

            def lost() -> bool:
                try:
                    lease.check()
                except LeaseLost:
                    return True
                return False

            _until(lost, "the renewal noticed the takeover")
    assert _keys(kb) == {key: "run-B"}  # the release left the taker's lease alone


def test_wait_and_ttl_default_to_the_environment(kb, docs, monkeypatch):
    monkeypatch.setenv("OPS_LEASE_WAIT_SECONDS", "0.2")
    monkeypatch.setenv("OPS_LEASE_TTL_SECONDS", "7")
    with kb.container_lease(docs.id, holder_for(None)):
        (lease,) = kb.leases()
        assert lease.holder == f"pid {os.getpid()}" and lease.pid == os.getpid()
        assert lease.expires_at - lease.acquired_at == timedelta(seconds=7)
        with pytest.raises(VectorStoreBusy, match=rf"by pid {os.getpid()} on host .* waited 0.2 s"):
            with kb.container_lease(docs.id, "run-B"):
                pass
    assert holder_for("0f3c-run") == "0f3c-run"
    for bad in ("-1", "soon"):
        monkeypatch.setenv("OPS_LEASE_WAIT_SECONDS", bad)
        with pytest.raises(ValueError, match="OPS_LEASE_WAIT_SECONDS"):
            settings.lease_wait_seconds()
    monkeypatch.setenv("OPS_LEASE_WAIT_SECONDS", "0")
    assert settings.lease_wait_seconds() == 0


def test_schema_4_adds_the_leases_table_to_an_existing_database(sqlite_url):
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        for migration in MIGRATIONS[:3]:
            migration(conn)
        schema.schema_version.create(conn)
        conn.execute(insert(schema.schema_version).values(version=3))
    engine.dispose()
    kb = KnowledgeBase(sqlite_url)
    try:
        assert LATEST >= 4 and inspect(kb.engine).has_table("leases")
        assert kb.leases() == []
    finally:
        kb.close()
