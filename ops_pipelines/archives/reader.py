"""Read a container archive safely: verify it, and optionally extract it into a folder.

Nothing in an archive is trusted. Members are read one at a time, never with ``extractall``:
only regular files with the format's own names are accepted (no absolute paths, no ``..``, no
links, no devices, no directories), the manifest must come first, sizes are capped per member
and in total, zip members may not be encrypted or compressed beyond a ratio, and every member's
bytes must match the manifest's size and sha256 (and no member may be missing or extra). Where
the format counts its blobs instead of listing them, each ``blobs/<sha256>`` member must hash to
its name, come in ascending name order (so none repeats) and add up to the manifest's count and
bytes: memory stays flat however many documents an archive holds. The
header of every ``.npy`` member is read on the way (``VerifiedArchive.arrays``), so a manifest can
be checked against the arrays it describes without extracting them (``ArchiveSpec.check``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from ops_pipelines.archives.format import (
    BLOB_PREFIX,
    BLOBS,
    CONTAINER_ARCHIVE,
    DEFAULT_LIMITS,
    MANIFEST,
    SHA256,
    ArchiveError,
    ArchiveSpec,
    ChecksumMismatch,
    Limits,
    UnsafeMember,
    UnsupportedFormat,
)
from ops_pipelines.archives.npy import read_header

_NPY_HEAD = 64 << 10  # bytes of a .npy member kept to read its header (numpy writes at most 64 KiB of it)


@dataclass(frozen=True)
class ArrayHeader:
    """What a ``.npy`` member's header declares: dtype and shape."""

    dtype: np.dtype
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.dtype} {self.shape}"


@dataclass(frozen=True)
class VerifiedArchive:
    manifest: dict
    format: str
    root: Path | None  # where members were extracted, if they were
    # members verified but, by the caller's choice, not extracted (blobs are never named here:
    # the ones extracted are the files under ``root / "blobs"``)
    skipped: frozenset[str] = frozenset()
    arrays: dict[str, ArrayHeader | None] = field(default_factory=dict)  # each .npy member's header

    def member(self, name: str) -> Path:
        assert self.root is not None, "archive was verified, not extracted"
        assert name not in self.skipped, f"member {name} was verified, not extracted"
        return self.root / name

    @property
    def member_count(self) -> int:
        """Every member verified: the manifest, the members it lists, the blobs it counts."""
        return 1 + len(self.manifest["members"]) + self.manifest.get(BLOBS, {}).get("count", 0)

    def extracted_blobs(self) -> Iterator[tuple[str, Path]]:
        """(sha256, file) of each blob member extracted, in no set order; each was verified to
        hash to its name (and to the manifest's entry, where the format lists blobs)."""
        assert self.root is not None, "archive was verified, not extracted"
        folder = self.root / BLOB_PREFIX
        if folder.is_dir():
            with os.scandir(folder) as entries:
                for entry in entries:
                    yield entry.name, Path(entry.path)


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # "file", or what else it is
    size: int
    compressed: int | None = None
    encrypted: bool = False


def read_archive(
    path: str | Path,
    dest: str | Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
    spec: ArchiveSpec = CONTAINER_ARCHIVE,
    extract: Callable[[str], bool] | None = None,
) -> VerifiedArchive:
    """Verify ``path`` completely as a ``spec`` archive; with ``dest``, also extract its members
    there (those ``extract`` accepts, if given: the others are verified all the same)."""
    path = Path(path)
    skipped: set[str] = set()
    arrays: dict[str, ArrayHeader | None] = {}
    if not path.is_file():
        raise ArchiveError(f"{path} does not exist or is not a file")
    root = Path(dest) if dest is not None else None
    try:
        with _open(path) as (fmt, members):
            manifest, expected, blobs = None, {}, None
            seen: set[str] = set()
            total = 0
            for index, (member, stream) in enumerate(members):
                counted = blobs is not None and member.name.startswith(BLOB_PREFIX)
                _check_member(member, index, None if counted else seen, limits, spec)
                total += member.size
                if total > limits.total_bytes or index >= limits.members:
                    raise UnsafeMember(f"archive exceeds the limit of {limits.total_bytes} bytes or {limits.members} members")
                if index == 0:
                    manifest = _read_manifest(stream(), member.size, limits, spec)
                    expected = {m["name"]: m for m in manifest["members"]}
                    if spec.counts_blobs(manifest["format_version"]):
                        blobs = _BlobTally(manifest[BLOBS])
                    if root is not None:
                        root.mkdir(parents=True, exist_ok=True)
                        (root / MANIFEST).write_text(json.dumps(manifest))
                    continue
                if counted:
                    blobs.add(member)
                    want = {"size": member.size, "sha256": member.name.removeprefix(BLOB_PREFIX)}
                elif member.name not in expected:
                    raise UnsafeMember(f"member {member.name!r} is not listed in the manifest")
                else:
                    want = expected[member.name]
                if member.size != want["size"]:
                    raise ChecksumMismatch(f"member {member.name}: {member.size} bytes, the manifest says {want['size']}")
                target = root / member.name if root else None
                if target is not None and extract is not None and not extract(member.name):
                    if not member.name.startswith(BLOB_PREFIX):
                        skipped.add(member.name)
                    target = None
                head = bytearray() if member.name.endswith(".npy") else None
                digest = _copy(stream(), target, member.size, head)
                if head is not None:
                    arrays[member.name] = _array_header(bytes(head))
                if digest != want["sha256"]:
                    source = "its name" if counted else "the manifest's"
                    raise ChecksumMismatch(f"member {member.name}: sha256 {digest} does not match {source} {want['sha256']}")
            if manifest is None:
                raise ArchiveError("the archive is empty")
            missing = sorted(set(expected) - seen)
            if missing:
                raise ArchiveError(f"members listed in the manifest are missing (truncated archive?): {', '.join(missing[:5])}")
            if blobs is not None:
                blobs.check()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise ArchiveError(f"{path.name} is truncated or corrupt: {exc}") from exc
    if spec.check is not None:
        spec.check(manifest, arrays)
    return VerifiedArchive(manifest, fmt, root, frozenset(skipped), arrays)


class _BlobTally:
    """The blob members of an archive that counts them: in ascending name order (so none
    repeats, and no set of their names is kept), adding up to the manifest's count and bytes."""

    def __init__(self, declared: dict):
        self.declared, self.count, self.bytes, self.last = declared, 0, 0, ""

    def add(self, member: _Member) -> None:
        if member.name <= self.last:
            raise UnsafeMember(f"blob member {member.name!r} repeats or is out of order (blobs come in ascending name order)")
        self.last = member.name
        self.count += 1
        self.bytes += member.size

    def check(self) -> None:
        if (self.count, self.bytes) != (self.declared["count"], self.declared["bytes"]):
            raise ArchiveError(
                f"the archive holds {self.count} blobs of {self.bytes} bytes, the manifest says "
                f"{self.declared['count']} of {self.declared['bytes']} (truncated or altered archive?)"
            )


def _check_member(member: _Member, index: int, seen: set[str] | None, limits: Limits, spec: ArchiveSpec) -> None:
    """``seen``: the names met so far, to refuse a repeat (None for a counted blob: ``_BlobTally``
    refuses those)."""
    name = member.name
    if name.startswith("/") or "\\" in name or ".." in name.split("/") or ":" in name:
        raise UnsafeMember(f"member {name!r} has an unsafe path")
    if member.kind != "file":
        raise UnsafeMember(f"member {name!r} is a {member.kind}: only regular files are allowed")
    if member.encrypted:
        raise UnsafeMember(f"member {name!r} is encrypted")
    if index == 0 and name != MANIFEST:
        raise ArchiveError(f"the first member is {name!r}, not {MANIFEST}: not an ops-pipelines archive")
    if index > 0 and not spec.member_name.match(name):
        raise UnsafeMember(f"member {name!r} is not part of the archive format")
    if seen is not None:
        if name in seen:
            raise UnsafeMember(f"member {name!r} appears twice")
        seen.add(name)
    if member.size > limits.member_bytes:
        raise UnsafeMember(f"member {name!r} declares {member.size} bytes, over the limit of {limits.member_bytes}")
    if member.compressed is not None and member.size > limits.compression_ratio * max(member.compressed, 1):
        raise UnsafeMember(f"member {name!r} expands {member.size // max(member.compressed, 1)}x: refused as a zip bomb")


def _read_manifest(stream: IO[bytes], size: int, limits: Limits, spec: ArchiveSpec) -> dict:
    if size > limits.manifest_bytes:
        raise UnsafeMember(f"{MANIFEST} is {size} bytes, over the limit of {limits.manifest_bytes}")
    try:
        manifest = json.loads(stream.read(size + 1))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != spec.format:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArchiveError(f"{MANIFEST} does not describe an {spec.format} (it says {found!r})")
    version = manifest.get("format_version")
    readable = (*spec.older_versions, spec.version)
    if version not in readable:
        raise UnsupportedFormat(
            f"archive format version {version!r} is not supported: this ops-pipelines reads version(s) "
            f"{', '.join(map(str, readable))}"
        )
    members = manifest.get("members")
    if not isinstance(members, list) or not all(
        isinstance(m, dict)
        and isinstance(m.get("name"), str)
        and spec.member_name.match(m["name"])
        and isinstance(m.get("size"), int)
        and m["size"] >= 0
        and isinstance(m.get("sha256"), str)
        and SHA256.match(m["sha256"])
        for m in members
    ):
        raise ArchiveError(f"{MANIFEST} has an invalid members list")
    # Blobs land in the shared content-addressed store: a blob's name must be its content's hash.
    for m in members:
        if m["name"].startswith(BLOB_PREFIX) and m["name"] != BLOB_PREFIX + m["sha256"]:
            raise ArchiveError(f"member {m['name']} does not hold the bytes its name promises (sha256 {m['sha256']})")
    if spec.counts_blobs(version):
        declared = manifest.get(BLOBS)
        if not (
            isinstance(declared, dict)
            and all(isinstance(declared.get(k), int) and not isinstance(declared[k], bool) and declared[k] >= 0
                    for k in ("count", "bytes"))
        ):
            raise ArchiveError(f"{MANIFEST} lacks a valid {BLOBS!r} section ({{count, bytes}} of the blob members)")
        if any(m["name"].startswith(BLOB_PREFIX) for m in members):
            raise ArchiveError(f"{MANIFEST} lists blob members, which format version {version} counts instead")
    for key in spec.sections:
        if not isinstance(manifest.get(key), dict):
            raise ArchiveError(f"{MANIFEST} lacks {key!r}")
    return manifest


def _copy(stream: IO[bytes], target: Path | None, size: int, head: bytearray | None = None) -> str:
    """Hash exactly ``size`` bytes of ``stream`` (writing them to ``target``, and the first
    ``_NPY_HEAD`` of them to ``head`` if given); a short stream is a truncated archive."""
    digest = hashlib.sha256()
    remaining = size
    out = None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = open(target, "xb")
    try:
        while remaining:
            block = stream.read(min(remaining, 1 << 20))
            if not block:
                raise ArchiveError(f"member {target.name if target else ''} ends early: the archive is truncated")
            digest.update(block)
            remaining -= len(block)
            if head is not None and len(head) < _NPY_HEAD:
                head += block[: _NPY_HEAD - len(head)]
            if out is not None:
                out.write(block)
    finally:
        if out is not None:
            out.close()
    return digest.hexdigest()


def _array_header(head: bytes) -> ArrayHeader | None:
    """The dtype and shape a ``.npy`` file's header declares; None if it is not one numpy reads."""
    header = read_header(io.BytesIO(head))
    return None if header is None else ArrayHeader(*header)


@contextmanager
def _open(path: Path) -> Iterator[tuple[str, Iterator]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            yield "zip", _zip_members(archive)
        return
    try:
        tar = tarfile.open(path, "r:*")
    except tarfile.TarError as exc:
        raise ArchiveError(f"{path.name} is neither a tar nor a zip archive (or it is truncated): {exc}") from exc
    with tar:
        yield "tar", _tar_members(tar)


def _tar_members(tar: tarfile.TarFile) -> Iterator:
    for info in tar:  # headers are read one at a time: nothing is extracted
        kind = (
            "file" if info.isreg() else "symbolic link" if info.issym() else "hard link" if info.islnk()
            else "directory" if info.isdir() else "device or special file"
        )
        yield _Member(info.name, kind, info.size), lambda info=info: tar.extractfile(info)


def _zip_members(archive: zipfile.ZipFile) -> Iterator:
    for info in archive.infolist():
        mode = info.external_attr >> 16
        kind = (
            "directory" if info.is_dir() else "symbolic link" if stat.S_ISLNK(mode)
            else "file" if stat.S_IFMT(mode) in (0, stat.S_IFREG) else "device or special file"
        )
        compressed = info.compress_size if info.compress_type != zipfile.ZIP_STORED else None
        member = _Member(info.filename, kind, info.file_size, compressed, bool(info.flag_bits & 0x1))
        yield member, lambda info=info: archive.open(info)
