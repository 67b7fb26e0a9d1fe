"""Copy a vector folder written by qdrant-client's local mode (ops-pipelines before Qdrant Edge)
into Qdrant Edge shards in the same folder (``ops-pipelines vectors migrate``).

The local-mode files are only read: every collection is copied page by page, then compared
(point count, every id, and a sample of vectors and payloads). Only when all of them match is
``local-mode.migrated`` written, the one step that makes the folder an Edge folder (until then
the store refuses it and names this command). A migration that dies is started over by running
it again; the old files stay beside the shards until the operator removes them (``remove_old``).
Aliases are not copied: on the embedded engine the live generation recorded in the metadata DB
is the alias, so each old alias is only compared with that record and reported.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ops_pipelines.errors import OperatorError
from ops_pipelines.vectors.edge import MANIFEST, MIGRATED, EdgeVectorStore, is_local_mode_folder
from ops_pipelines.vectors.server import QdrantServerStore

_log = logging.getLogger(__name__)
LOCAL_MODE_FILES = ("meta.json", "collection", ".lock")
SAMPLE = 200  # points per collection whose vector and payload are compared


class MigrationFailed(OperatorError, RuntimeError):
    pass


@dataclass(frozen=True)
class MigratedCollection:
    name: str
    dimension: int
    points: int
    sampled: int


@dataclass
class MigrationReport:
    root: Path
    collections: list[MigratedCollection] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # old alias -> collection
    removed_old: bool = False


def migrate_local_mode(root: str | Path, remove_old: bool = False, log: logging.Logger = _log) -> MigrationReport:
    root = Path(root)
    if remove_old and (root / MIGRATED).is_file() and (root / "meta.json").is_file():
        remove_local_mode_files(root)  # migrated before: what is left is the old files
        return MigrationReport(root, removed_old=True)
    if not is_local_mode_folder(root):
        raise MigrationFailed(f"{root} holds no qdrant-client local-mode files (meta.json): nothing to migrate")
    from qdrant_client import QdrantClient

    try:
        client = QdrantClient(path=str(root))
    except RuntimeError as exc:  # "already accessed by another instance"
        raise MigrationFailed(f"{root} is in use by another process ({exc}): stop it and retry") from None
    old = QdrantServerStore(client, f"qdrant-client local mode in {root}")
    report = MigrationReport(root, aliases=old.aliases())
    try:
        names = old.collection_names()
        clashes = [n for n in names if n in LOCAL_MODE_FILES or n.startswith(".")]
        if clashes:
            raise MigrationFailed(f"collections {clashes} cannot become folders beside the local-mode files")
        _clear_earlier_attempt(root)
        new = EdgeVectorStore(root, allow_local_mode=True)
        try:
            for name in names:
                report.collections.append(_copy(old, new, name, log))
        finally:
            new.close()
    finally:
        old.close()
    facts = {"migrated_at": datetime.now(UTC).isoformat(timespec="seconds"), "collections": {
        c.name: {"dimension": c.dimension, "points": c.points} for c in report.collections
    }, "aliases": report.aliases}
    (root / MIGRATED).write_text(json.dumps(facts, indent=1))
    log.info("migrated %d collections into Qdrant Edge in %s", len(report.collections), root)
    if remove_old:
        remove_local_mode_files(root)
        report.removed_old = True
    return report


def remove_local_mode_files(root: Path) -> None:
    for name in LOCAL_MODE_FILES:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _clear_earlier_attempt(root: Path) -> None:
    """Shards a migration that died left behind (no marker was written, so nothing used them)."""
    for path in root.iterdir():
        if (path / MANIFEST).is_file():
            shutil.rmtree(path)


def _copy(old: QdrantServerStore, new: EdgeVectorStore, name: str, log) -> MigratedCollection:
    dimension = old.collection_dimension(name)
    new.create_collection(name, dimension, old.is_hybrid(name))
    ids: list[str] = []
    for page in old.pages(name, with_payload=True, with_vectors=True, page=1024):
        page_ids = page.id_strings()
        if page_ids:
            new.upsert(name, page_ids, page.vectors, page.payloads)
        ids += page_ids
    sampled = _compare(old, new, name, ids)
    new.build_index(name)
    log.info("%s: %d points (%d-d) copied, %d compared", name, len(ids), dimension, sampled)
    return MigratedCollection(name, dimension, len(ids), sampled)


def _compare(old: QdrantServerStore, new: EdgeVectorStore, name: str, ids: list[str]) -> int:
    if new.count(name) != len(ids) or new.point_ids(name) != set(ids):
        raise MigrationFailed(f"{name}: {new.count(name)} points in Qdrant Edge, {len(ids)} in local mode")
    rng = np.random.default_rng(0)
    sample = [ids[i] for i in rng.choice(len(ids), size=min(SAMPLE, len(ids)), replace=False)] if ids else []
    before = {p.id: p for p in old.retrieve(name, sample, with_vectors=True)}
    for after in new.retrieve(name, sample, with_vectors=True):
        was = before[after.id]
        if after.payload != was.payload or not np.allclose(after.vector, was.vector, atol=1e-6):
            raise MigrationFailed(f"{name}: point {after.id} differs after the copy")
    return len(sample)
