"""Collections of the embedded engine in a backup as their shard's files
(``collections/<name>/shard/<path>``), copied as they are, HNSW index included.

Writing them costs a file copy where the points' format costs a scroll of every point; restoring
them to the embedded engine moves the files into place, so nothing is rewritten or re-indexed (a
million points took 16 minutes to write and index again). Their points are still checked: a live
generation's are scrolled once through the content checks before anything is swapped. A restore
to a Qdrant server reads their points through Qdrant Edge and writes them, as for the points'
format.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ops_pipelines.archives.format import ArchiveError
from ops_pipelines.backup.format import SHARD, collection_member
from ops_pipelines.backup.points import DumpedCollection
from ops_pipelines.vectors import EdgeVectorStore, VectorStore
from ops_pipelines.vectors.edge import UnusableShard


def dump_shard(store: VectorStore, name: str, staging: Path) -> DumpedCollection:
    """Copy collection ``name`` of an embedded store into ``staging`` as backup members."""
    dimension = store.collection_dimension(name)
    if dimension is None:
        raise ArchiveError(f"collection {name} does not exist in Qdrant")
    folder = staging / collection_member(name, SHARD)
    lengths, ids = store.copy_files(name, folder)
    members = {collection_member(name, f"{SHARD}/{f}"): file_facts(folder / f) for f in lengths}
    return DumpedCollection(name, dimension, len(ids), ids, members, lengths, hybrid=store.is_hybrid(name))


@contextmanager
def shard_points(
    store: VectorStore, root: Path, backed_up: str, name: str, entry: dict, log: logging.Logger
) -> Iterator[tuple[VectorStore, str]]:
    """The backed-up shard extracted under ``root`` (its manifest ``entry`` gives the dimension and
    the files' lengths), as a collection to read its points from: on an embedded ``store`` it is
    moved in as collection ``name`` (the restore itself); on a server it is opened by a Qdrant
    Edge store of its own, for the restore to write its points over."""
    dimension, lengths, hybrid = entry["dimension"], entry["lengths"], entry.get("hybrid", False)
    folder = root / collection_member(backed_up, SHARD)
    try:
        if store.keeps_files:
            store.adopt_files(name, folder, dimension, lengths, hybrid)
            yield store, name
            return
        with tempfile.TemporaryDirectory(dir=root, prefix=".shard-") as tmp:
            reader = EdgeVectorStore(tmp)
            try:
                reader.adopt_files(backed_up, folder, dimension, lengths, hybrid)
                log.info("restore: reading %s's points through Qdrant Edge", backed_up)
                yield reader, backed_up
            finally:
                reader.close()
    except UnusableShard as exc:
        raise ArchiveError(f"{exc}: the backup is damaged or was written by an engine this code cannot read") from None


def file_facts(path: Path) -> dict:
    """A staged member's size and sha256."""
    with open(path, "rb") as handle:
        return {"size": path.stat().st_size, "sha256": hashlib.file_digest(handle, "sha256").hexdigest()}
