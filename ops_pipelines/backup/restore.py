"""Restore a verified backup into place, so that a failure at any step leaves the previous
knowledge base serving.

1. The caller has verified every checksum (``archives.read_archive`` with ``BACKUP_ARCHIVE``)
   and extracted the members; the backup's database is opened as a KB of its own (and migrated
   if it is older than this code).
2. ``plan_restore`` compares it with the current KB (containers created, replaced, removed;
   collections written; aliases moved). A dry run stops here.
3. A non-empty KB is only replaced with ``force``.
4. Blobs missing from the object store are put (content-addressed: nothing is overwritten).
5. Each backed-up collection is read a batch at a time and written under a name no current
   collection has; a live generation's points must pass the content checks (count, ids,
   dimension, values, payload hashes) against the backup's own database as they go by, and the
   written collection must then hold every point and retrieve a sample of chunks by search.
   All of it before the current KB is touched.
6. One transaction replaces every row of the metadata DB: on the embedded engine that moves
   every container's alias (its recorded live generation); on a Qdrant server one atomic alias
   update then moves every alias to its restored live collection.
7. Only then are the previous state's collections dropped.

Until step 6 commits, the previous rows, collections and aliases are untouched; a failure before
it drops what was written, a kill leaves unreferenced collections that maintenance removes.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from ops_pipelines.archives.digests import DigestSet
from ops_pipelines.archives.format import BLOB_PREFIX, SHA256, ArchiveError
from ops_pipelines.archives.reader import VerifiedArchive, read_archive
from ops_pipelines.backup.database import TABLES, check_integrity, open_copy, replace_rows
from ops_pipelines.backup.format import (
    BACKUP_ARCHIVE,
    COLLECTION_PREFIX,
    DATABASE,
    POINTS,
    POINTS_LAYOUT,
    SHARD,
    VECTORS,
    collection_member,
)
from ops_pipelines.backup.points import point_batches
from ops_pipelines.backup.shards import shard_points
from ops_pipelines.embedders import get_version
from ops_pipelines.ingest import CollectionWriter, ExpectedPoints, expected_points, index_fields, serving_chunker
from ops_pipelines.kb import Container, Generation, KnowledgeBase, schema
from ops_pipelines.kb.generations import DROPPED, LIVE
from ops_pipelines.kb.migrations import SchemaTooNew
from ops_pipelines.objects import ObjectStore, blob_key
from ops_pipelines.refresh.gate import content_scan, retrieval_check
from ops_pipelines.vectors import VectorStore
from ops_pipelines.vectors.ids import id_bytes
from ops_pipelines.vectors.reconcile import ID_FIELDS, CheckResult
from ops_pipelines.vectors.serving import publish_all

if TYPE_CHECKING:  # imported by plan_restore: listing backups (ops-pipelines backup list) needs no pandas
    import pandas as pd

_log = logging.getLogger(__name__)
_COLLECTION = re.compile(r"^kb_[a-z0-9_-]{1,230}$")
_RESTORED = re.compile(r"__r[0-9a-f]{8}$")
_MAX_SHARD_FILE = 1 << 40  # a shard file's length, zeros restored: more is a forged manifest
_UNCHANGED_TABLES = {t.name for t in TABLES if t is not schema.generations}  # rows restored as they are


class RestoreRefused(ArchiveError):
    pass


@dataclass(frozen=True)
class RestorePlan:
    created_at: str
    run_id: str
    containers: pd.DataFrame  # slug, action, documents/chunks now and in the backup, live collections
    collections: dict[str, str]  # backed-up name -> the name it is restored as
    points: int
    drops: list[str]  # the current collections dropped once the restore has swapped
    current_containers: int

    def describe(self) -> str:
        lines = [
            (
                f"backup of {self.created_at} (run {self.run_id or '-'}): {len(self.containers)} container(s), "
                f"{len(self.collections)} collection(s), {self.points} points"
            ),
            self.containers.to_string(index=False) if len(self.containers) else "(no containers)",
        ]
        for old, new in self.collections.items():
            lines.append(f"write collection {new}" + (f" (backed up as {old})" if new != old else ""))
        lines += [f"drop collection {name} after the swap" for name in self.drops]
        return "\n".join(lines)


@dataclass
class RestoreReport:
    plan: RestorePlan
    rows: dict[str, int]
    blobs_put: int
    checks: dict[str, list[CheckResult]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def plan_restore(kb: KnowledgeBase, store: VectorStore, archive: VerifiedArchive) -> RestorePlan:
    """What ``restore_backup`` would change; reads the backup and the current KB, writes nothing."""
    with _backup_kb(archive) as backup:
        return _plan(kb, store, backup, archive.manifest)


def restore_backup(
    kb: KnowledgeBase,
    store: VectorStore,
    objects: ObjectStore,
    archive: VerifiedArchive,
    force: bool = False,
    log: logging.Logger = _log,
) -> RestoreReport:
    timings: dict[str, float] = {}
    clock = _Clock(timings)
    with _backup_kb(archive) as backup:
        plan = _plan(kb, store, backup, archive.manifest)
        if plan.current_containers and not force:
            raise RestoreRefused(
                f"the knowledge base holds {plan.current_containers} container(s): restoring would replace them. "
                "Check the plan with --dry-run / dry_run: true, then restore with --force / force: true"
            )
        log.info("restore: plan\n%s", plan.describe())
        blobs = _put_blobs(objects, archive)
        clock.lap("blobs")
        written: list[str] = []
        gate = _Gate()
        # The DB copy runs beside the collections (SQLite and the PostgreSQL driver work outside
        # the GIL) and waits, inside its transaction, for the checks' verdict.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-db") as pool:
            copy = pool.submit(
                replace_rows, archive.member(DATABASE), kb, _renamer(plan.collections), _UNCHANGED_TABLES, gate.wait
            )
            try:
                checked = _write_collections(backup, store, archive, plan, written, log)
                clock.lap("collections")
                checks = _check_retrieval(backup, store, checked, log)
                clock.lap("checks")
                gate.open(passed=True)
                rows = copy.result()
                clock.lap("database")
            except BaseException:
                gate.open(passed=False)
                for name in written:
                    store.drop_collection(name)
                raise
    publish_all(kb, store)
    clock.lap("aliases")
    for name in plan.drops:
        store.drop_collection(name)
        log.info("restore: dropped %s of the replaced knowledge base", name)
    log.info("restore: %s", ", ".join(f"{n} {t}" for t, n in rows.items()))
    return RestoreReport(plan, rows, blobs, checks, timings)


class _Abandoned(RuntimeError):
    """The restore failed elsewhere: the DB copy rolls back."""


class _Gate:
    def __init__(self):
        self.event, self.passed = threading.Event(), False

    def open(self, passed: bool) -> None:
        self.passed = passed
        self.event.set()

    def wait(self) -> None:
        self.event.wait()
        if not self.passed:
            raise _Abandoned("the restore failed before the database was replaced")


class _Clock:
    def __init__(self, timings: dict[str, float]):
        self.timings, self.last = timings, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.last, 3)
        self.last = now


@contextmanager
def _backup_kb(archive: VerifiedArchive) -> Iterator[KnowledgeBase]:
    path: Path = archive.member(DATABASE)
    problem = check_integrity(path)
    if problem is not None:
        raise ArchiveError(f"{DATABASE} is not a sound SQLite database: {problem}")
    with ExitStack() as stack:
        try:
            backup = stack.enter_context(open_copy(path))
            backup.list_containers()
        except SchemaTooNew as exc:
            raise ArchiveError(f"the backup comes from a newer ops-pipelines: {exc}") from None
        except SQLAlchemyError as exc:
            raise ArchiveError(f"{DATABASE} is not a knowledge base this code can read: {exc}") from None
        yield backup


def _plan(kb: KnowledgeBase, store: VectorStore, backup: KnowledgeBase, manifest: dict) -> RestorePlan:
    collections = _manifest_collections(backup, manifest)
    renamed = _restored_names([c["name"] for c in collections], store)
    current = {c.slug: c for c in kb.list_containers(every_state=True)}  # all go, their collections too
    restored = {c.slug: c for c in backup.list_containers()}
    rows = []
    for slug in sorted(set(current) | set(restored)):
        now, then = current.get(slug), restored.get(slug)
        rows.append(
            {
                "container": slug,
                "action": "create" if now is None else "remove" if then is None else "replace",
                **_sizes("now", kb, now),
                **_sizes("backup", backup, then),
                "live_collection": renamed.get(_live_collection(backup, then)) if then else None,
            }
        )
    import pandas as pd

    keep = set(renamed.values())
    drops = sorted(
        {g.collection for c in current.values() for g in kb.generations(c.id) if g.state != DROPPED} - keep
    )
    return RestorePlan(
        created_at=str(manifest.get("created_at")),
        run_id=str(manifest.get("run_id") or ""),
        containers=pd.DataFrame(rows),
        collections=renamed,
        points=sum(c["points"] for c in collections),
        drops=[name for name in drops if store.collection_dimension(name) is not None],
        current_containers=len(current),
    )


def _restored_names(names: list[str], store: VectorStore) -> dict[str, str]:
    """Each collection under its own name if that is free, else under ``<name>__r<token>`` (an
    earlier restore's token replaced, so names do not grow)."""
    token = uuid.uuid4().hex[:8]
    renamed = {}
    for name in names:
        base = _RESTORED.sub("", name)
        renamed[name] = base if store.collection_dimension(base) is None else f"{base}__r{token}"
    return renamed


def _check_lengths(entry: dict, sizes: dict[str, int]) -> None:
    """A shard collection's ``lengths`` name exactly its shard members, each at least its size."""
    lengths = entry.get("lengths")
    prefix = collection_member(entry["name"], f"{SHARD}/")
    files = {n for n in sizes if n.startswith(prefix)}
    if not (
        isinstance(lengths, dict)
        and {prefix + f for f in lengths} == files
        and all(isinstance(n, int) and sizes[prefix + f] <= n <= _MAX_SHARD_FILE for f, n in lengths.items())
    ):
        raise ArchiveError(f"collection {entry['name']}'s shard file lengths do not match its members")


def _manifest_collections(backup: KnowledgeBase, manifest: dict) -> list[dict]:
    """The manifest's collections, each a generation of the backup's DB; every live generation
    of the DB must be among them."""
    collections = manifest.get("collections")
    if not isinstance(collections, list):
        raise ArchiveError("the manifest lacks its collections list")
    # the collections' members only: a backup has one per blob too (200,000 at a million chunks)
    sizes = {m["name"]: m["size"] for m in manifest["members"] if m["name"].startswith(COLLECTION_PREFIX)}
    # collection name -> the first two levels of its members' paths ("collections/<name>/shard/segments/")
    prefixes: dict[str, set[str]] = {}
    for name in sizes:
        parts = name.split("/")
        prefixes.setdefault(parts[1], set()).add("/".join(parts[:4]) + "/")
    recorded = {
        (g.container_id, g.number): g for c in backup.list_containers() for g in backup.generations(c.id)
    }
    for entry in collections:
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and _COLLECTION.match(entry["name"])
            and isinstance(entry.get("dimension"), int)
            and 1 <= entry["dimension"] <= 65536
            and isinstance(entry.get("hybrid", False), bool)
            and isinstance(entry.get("points"), int)
            and entry["points"] >= 0
            and entry.get("layout", POINTS_LAYOUT) in (POINTS_LAYOUT, SHARD)
            and (entry.get("layout") != SHARD or manifest["format_version"] >= 2)
        )
        if not ok:
            raise ArchiveError(f"the manifest's collection entry {str(entry)[:200]} is invalid")
        generation = recorded.get((entry.get("container_id"), entry.get("generation")))
        if generation is None or generation.collection != entry["name"]:
            raise ArchiveError(f"collection {entry['name']} is not a generation recorded in {DATABASE}")
        if entry.get("layout") == SHARD:
            if collection_member(entry["name"], f"{SHARD}/segments/") not in prefixes.get(entry["name"], ()):
                raise ArchiveError(f"collection {entry['name']} has no shard segments member")
            _check_lengths(entry, sizes)
        elif not {collection_member(entry["name"], POINTS), collection_member(entry["name"], VECTORS)} <= sizes.keys():
            raise ArchiveError(f"collection {entry['name']} has no points or vectors member")
    names = {entry["name"] for entry in collections}
    if set(prefixes) - names:
        raise ArchiveError(f"members of collection(s) the manifest does not list: {', '.join(sorted(set(prefixes) - names))}")
    for g in recorded.values():
        if g.state == LIVE and g.collection not in names:
            raise ArchiveError(f"live collection {g.collection} is recorded in {DATABASE} but not in the backup")
    return collections


def _sizes(when: str, kb: KnowledgeBase, container: Container | None) -> dict:
    if container is None:
        return {f"documents_{when}": 0, f"chunks_{when}": 0}
    return {
        f"documents_{when}": kb.count_documents(container.id)["active"],
        f"chunks_{when}": kb.count_active_chunks(container.id, serving_chunker(kb, container)),
    }


def _live_collection(kb: KnowledgeBase, container: Container) -> str | None:
    live = kb.live_generation(container.id)
    return live.collection if live else None


def verify_backup(path: Path, dest: Path, objects: ObjectStore) -> VerifiedArchive:
    """Every member of the backup at ``path`` checked against its manifest and extracted into
    ``dest``, except the blobs ``objects`` already holds: those are verified, not written."""
    names = (key.rsplit("/", 1)[1] for key in objects.list(BLOB_PREFIX))  # keys blobs/ab/<sha256>
    stored = DigestSet(name for name in names if SHA256.match(name))
    return read_archive(
        path,
        dest,
        spec=BACKUP_ARCHIVE,
        extract=lambda name: not name.startswith(BLOB_PREFIX) or name[len(BLOB_PREFIX) :] not in stored,
    )


def _put_blobs(objects: ObjectStore, archive: VerifiedArchive) -> int:
    """The blobs extracted (those the object store lacked when the backup was verified)."""
    put = 0
    for sha, path in archive.extracted_blobs():
        if not objects.exists(blob_key(sha)):
            objects.move_file(blob_key(sha), path)
            put += 1
    return put


@dataclass
class _Checked:
    """A live generation whose points passed the content checks, under its restored name."""

    container: Container
    generation: Generation
    expected: ExpectedPoints
    results: list[CheckResult]


def _write_collections(
    backup: KnowledgeBase, store: VectorStore, archive: VerifiedArchive, plan: RestorePlan, written: list, log
) -> list[_Checked]:
    """Each collection read from the archive a batch at a time and written under its restored
    name (which nothing serves); a live generation's points pass the content checks against the
    backup's database as they go by, so a forged or inconsistent backup is refused with nothing
    changed (what was written is dropped)."""
    entries = {c["name"]: c for c in archive.manifest["collections"]}
    live = _live_generations(backup)
    owners = {c.id: c for c in backup.list_containers(every_state=True)}
    checked = []
    for old, new in plan.collections.items():
        entry = entries[old]
        scan = None
        if old in live:
            container, generation = live[old]
            expected = expected_points(backup, container, get_version(generation.embedder_version).chunker)
            scan = content_scan(expected, generation.embedder_version, entry["dimension"])
        written.append(new)
        if entry.get("layout") == SHARD:
            points = _restore_shard(store, archive.root, old, new, entry, scan, log)
        else:
            points = _restore_points(store, archive, old, new, entry, scan, log)
        if points != entry["points"]:
            raise ArchiveError(f"collection {new} holds {points} points, the backup's manifest says {entry['points']}")
        if (owner := owners.get(entry.get("container_id"))) is not None:
            index_fields(store, owner, new)
        if scan is not None:
            results = _passed(container, scan.results())
            checked.append(_Checked(container, replace(generation, collection=new), expected, results))
        store.release(new)  # one collection open at a time (the retrieval checks reopen the live ones)
        log.info("restore: %s: %d points", new, points)
    return checked


def _restore_points(store: VectorStore, archive: VerifiedArchive, old: str, new: str, entry: dict, scan, log) -> int:
    """A collection backed up as its points, written (and indexed) under its restored name."""
    store.create_collection(new, entry["dimension"], entry.get("hybrid", False))
    writer = CollectionWriter(store, new, log)
    for ids, payloads, vectors in point_batches(archive.root, old, entry["dimension"], entry["points"]):
        if scan is not None:
            scan.add(id_bytes(ids), payloads, vectors)
        writer.upsert(ids, vectors, payloads)
    stored = store.count(new)
    if stored != writer.written:
        raise ArchiveError(f"collection {new} holds {stored} points after the restore wrote {writer.written} (repeated ids?)")
    writer.finish()
    return stored


def _restore_shard(store: VectorStore, root: Path, old: str, new: str, entry: dict, scan, log) -> int:
    """A collection backed up as its shard's files: moved in as it is on the embedded engine (its
    points scrolled once through the content checks if it is a live generation), or its points
    read through Qdrant Edge and written on a server."""
    with shard_points(store, root, old, new, entry, log) as (source, name):
        writer = None
        if source is not store:
            store.create_collection(new, entry["dimension"], entry.get("hybrid", False))
            writer = CollectionWriter(store, new, log)
        if scan is not None or writer is not None:
            payloads = True if writer is not None else ID_FIELDS
            for page in source.pages(name, with_payload=payloads, with_vectors=True, page=1024):
                if scan is not None:
                    scan.add(page.ids, page.payloads, page.vectors)
                if writer is not None:
                    writer.upsert(page.id_strings(), page.vectors, page.payloads)
        if writer is not None:
            writer.finish()
    return store.count(new)


def _check_retrieval(backup: KnowledgeBase, store: VectorStore, checked: list[_Checked], log) -> dict[str, list]:
    """Every live generation, in its restored collection, answers searches for its own chunks."""
    results = {}
    for c in checked:
        retrieval = retrieval_check(backup, store, c.generation, c.expected)
        results[c.container.slug] = _passed(c.container, [*c.results, retrieval])
        log.info("restore: %s passes its %d checks", c.container.slug, len(results[c.container.slug]))
    return results


def _live_generations(backup: KnowledgeBase) -> dict[str, tuple[Container, Generation]]:
    """Backed-up collection name -> (container, its live generation), per the backup's DB."""
    live = {}
    for container in backup.list_containers():
        generation = backup.live_generation(container.id)
        if generation is not None:
            live[generation.collection] = (container, generation)
    return live


def _passed(container: Container, results: list[CheckResult]) -> list[CheckResult]:
    failed = [c for c in results if not c.passed]
    if failed:
        raise ArchiveError(
            f"restored {container.slug!r} fails its checks, nothing was changed: "
            + "; ".join(f"{c.name}: {c.summary}" for c in failed)
        )
    return results


def _renamer(collections: dict[str, str]):
    """Generation rows point at the restored names; a generation whose collection is not in the
    backup (a retired one already gone, an unfinished shadow) is recorded as dropped."""

    def transform(table, row: dict) -> dict:
        if table is schema.generations:
            if row["collection"] in collections:
                row["collection"] = collections[row["collection"]]
            else:
                row["state"] = DROPPED
        return row

    return transform
