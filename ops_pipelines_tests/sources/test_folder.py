"""The folder source reads only regular files inside its root, each bounded in size and time:
links, FIFOs, sockets and devices are skipped (never followed, never opened) and named."""

from __future__ import annotations

import os
import socket
import stat
import threading

import pytest

from ops_pipelines.sources import FolderSource, SourceDocument, SourceSkip
from ops_pipelines.sources import folder as folder_module

SECRET = "DB_PASSWORD=hunter2-from-prod"


@pytest.fixture
def outside(tmp_path):
    """Files outside the source root: what a link must never bring in."""
    where = tmp_path / "some" / "where"
    where.mkdir(parents=True)
    (where / "prod.env").write_text(SECRET)
    (where / "secret.md").write_text(f"# Secret\n\n{SECRET}")
    return where


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nThe one regular file.")
    return root


def split(records) -> tuple[dict[str, SourceDocument], dict[str, str]]:
    records = list(records)
    docs = {r.key: r for r in records if isinstance(r, SourceDocument)}
    skips = {r.key: r.reason for r in records if isinstance(r, SourceSkip)}
    return docs, skips


def read_within(source: FolderSource, seconds: float = 20.0) -> list:
    """``source.read()`` in a thread: a read that blocks (a FIFO opened for reading) fails the test
    instead of hanging it."""
    out: list = []
    errors: list = []

    def run() -> None:
        try:
            out.extend(source.read())
        except Exception as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"read() of {source.location} still blocked after {seconds} s"
    if errors:
        raise errors[0]
    return out


def test_links_are_never_followed_and_are_named(root, outside):
    (root / "notes.txt").symlink_to(outside / "prod.env")  # a file link out of the root
    (root / "inner.md").symlink_to(root / "a.md")  # a link inside the root: refused too
    (root / "gone.md").symlink_to(root / "missing.md")  # dangling
    (root / "shared").symlink_to(outside, target_is_directory=True)  # a directory link out
    (root / "image.png").symlink_to(outside / "prod.env")  # not a document name: ignored silently

    docs, skips = split(read_within(FolderSource(str(root))))
    assert list(docs) == ["a.md"]
    assert set(skips) == {"notes.txt", "inner.md", "gone.md", "shared"}
    for key in skips:
        assert "symbolic link" in skips[key] and "not followed" in skips[key], skips[key]
    assert str(outside / "prod.env") in skips["notes.txt"]  # says where it pointed
    assert all(SECRET.encode() not in d.raw for d in docs.values())


def test_the_fingerprint_does_not_follow_links(root, outside):
    (root / "notes.txt").symlink_to(outside / "prod.env")
    source = FolderSource(str(root))
    first = source.fingerprint()
    (outside / "prod.env").write_text(SECRET + " and more, rotated")
    assert source.fingerprint() == first  # the target is not part of the source


def test_a_root_that_is_itself_a_link_is_read(root, tmp_path):
    link = tmp_path / "current"
    link.symlink_to(root, target_is_directory=True)
    docs, skips = split(FolderSource(str(link)).read())
    assert list(docs) == ["a.md"] and skips == {}
    assert docs["a.md"].uri == (link / "a.md").as_uri()  # keys and URIs are the operator's path


def test_fifos_sockets_and_devices_are_skipped_without_being_opened(root):
    os.mkfifo(root / "pipe.md")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(root / "sock.txt"))
    device = root / "null.txt"
    can_mknod = True
    try:
        os.mknod(device, stat.S_IFCHR | 0o644, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        can_mknod = False
    try:
        docs, skips = split(read_within(FolderSource(str(root))))
    finally:
        sock.close()
        _release_fifo(root / "pipe.md")
    assert list(docs) == ["a.md"]
    assert "named pipe (FIFO)" in skips["pipe.md"] and "not read" in skips["pipe.md"]
    assert "socket" in skips["sock.txt"]
    if can_mknod:
        assert "device" in skips["null.txt"]
    FolderSource(str(root)).fingerprint()  # stats, never opens: returns


def _release_fifo(path) -> None:
    """Unblock a reader stuck opening the FIFO (the code before the fix), so the thread ends."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # no reader waiting
    os.close(fd)


def test_a_file_swapped_for_a_link_or_a_fifo_after_the_check_is_not_read(root, outside, monkeypatch):
    (root / "b.md").write_text("# B\n\nregular when listed")
    (root / "c.md").write_text("# C\n\nregular when listed")
    real_open = os.open

    def swap_then_open(path, flags, *args, **kwargs):
        name = os.fsdecode(path)
        if name == "b.md":
            os.unlink(root / "b.md")
            os.symlink(outside / "prod.env", root / "b.md")
        elif name == "c.md":
            os.unlink(root / "c.md")
            os.mkfifo(root / "c.md")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(folder_module.os, "open", swap_then_open)
    try:
        docs, skips = split(read_within(FolderSource(str(root))))
    finally:
        _release_fifo(root / "c.md")
    assert list(docs) == ["a.md"]
    assert "changed while being read" in skips["b.md"] and "changed while being read" in skips["c.md"]
    assert all(SECRET.encode() not in d.raw for d in docs.values())


def test_documents_over_the_size_limit_are_skipped_and_named(root, monkeypatch):
    monkeypatch.setenv("OPS_SOURCE_MAX_DOCUMENT_BYTES", "1000")
    (root / "exact.txt").write_bytes(b"x" * 1000)
    (root / "big.txt").write_bytes(b"y" * 1001)
    docs, skips = split(FolderSource(str(root)).read())
    assert sorted(docs) == ["a.md", "exact.txt"] and len(docs["exact.txt"].raw) == 1000
    assert "1,001 bytes" in skips["big.txt"] and "1,000" in skips["big.txt"]
    assert "OPS_SOURCE_MAX_DOCUMENT_BYTES" in skips["big.txt"]
    # A limit given to the source wins over the environment.
    docs, skips = split(FolderSource(str(root), max_document_bytes=2000).read())
    assert "big.txt" in docs and not skips


def test_the_default_limit_is_a_few_megabytes(root, monkeypatch):
    monkeypatch.delenv("OPS_SOURCE_MAX_DOCUMENT_BYTES", raising=False)
    (root / "huge.txt").write_bytes(b"z" * (5 * 1024 * 1024 + 1))
    docs, skips = split(FolderSource(str(root)).read())
    assert "huge.txt" not in docs and "over the" in skips["huge.txt"]


def test_a_file_that_grows_while_read_is_cut_off_and_skipped(root, monkeypatch):
    monkeypatch.setenv("OPS_SOURCE_MAX_DOCUMENT_BYTES", "1000")
    (root / "log.txt").write_bytes(b"small")
    real_open = os.open

    def grow_then_open(path, flags, *args, **kwargs):
        if os.fsdecode(path) == "log.txt":
            with open(root / "log.txt", "ab") as handle:
                handle.write(b"g" * 5000)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(folder_module.os, "open", grow_then_open)
    docs, skips = split(FolderSource(str(root)).read())
    assert "log.txt" not in docs and "grew past" in skips["log.txt"]


def test_a_slow_read_is_abandoned_at_the_read_timeout(root, monkeypatch):
    monkeypatch.setenv("OPS_SOURCE_READ_TIMEOUT_S", "30")
    (root / "slow.txt").write_bytes(b"s" * 300)
    monkeypatch.setattr(folder_module, "READ_CHUNK", 100)
    clock = iter(range(0, 10_000, 20))  # every look at the clock: 20 s later
    monkeypatch.setattr(folder_module, "monotonic", lambda: next(clock))
    docs, skips = split(FolderSource(str(root)).read())
    assert "slow.txt" not in docs and "longer than 30 s" in skips["slow.txt"]
