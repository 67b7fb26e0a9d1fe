"""The embedded engine: Qdrant Edge (``qdrant-edge-py``, Qdrant's own engine in this process), one
Edge shard per collection generation, each a directory ``<root>/<collection>/``.

Edge allows one process per shard directory (a second open fails at once with ``WouldBlock``),
and refuses a second open inside one process too. So shards are opened once per process and
shared by every store and thread of it (``_OpenShards``), and an open that finds the directory
held by another process waits for it, up to ``wait_seconds``, then raises ``VectorStoreBusy``
naming the holder. Operations keep the shards they touch open until their store is closed:
a search holds its collection for the search, a sync its live one for the sync.

Edge has no aliases: the live generation recorded in the metadata DB is a container's alias
(``vectors.serving``), so a swap is one DB transaction.

Search is brute force over points not indexed yet (about 10-15 ms per 100k points here) until
``build_index`` runs Edge's optimizers, which build the HNSW graph over int8-quantised vectors
(searches then rescore with the full vectors). Writers call it each time a segment's worth of
points (``INDEX_MIN_POINTS``) has been written (``VectorStore.index_batch``): the optimizers then
index that segment alone, and never merge segments past that size, so an index build takes the
same time and memory whatever the collection's size (one build over a million points took 4 GB).

Memory stays flat at any size: vectors, payloads, quantised vectors and graphs are memory-mapped
and read on demand (``Memory.Cold``), and a shard is reopened after every ``RECYCLE_POINTS``
points a process writes or scrolls through, which unmaps the pages it touched (the kernel counts
a mapped page in the process's memory until then).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import qdrant_edge as edge

from ops_pipelines.errors import OperatorError, VectorStoreBusy
from ops_pipelines.vectors.base import CollectionNotFound, Hit, PointPage, StoredPoint, VectorStore
from ops_pipelines.vectors.ids import DTYPE, sorted_ids
from ops_pipelines.vectors.sparse import RRF_K, SPARSE, document_terms, prefetch_limit, query_terms

VECTOR = "dense"  # the dense vector's name in every shard
MANIFEST = "collection.json"  # ours, beside Edge's files: the collection's dimension, and if hybrid
HOLDER = "holder.json"  # who has the shard open (for the busy message)
MIGRATED = "local-mode.migrated"  # written by ``vectors.migrate`` once the copy is verified
# Unindexed points worth an HNSW build, and the size of an indexed segment: below this a search
# compares every point exactly, in 15-25 ms at 100,000 (an index build takes longer than many such
# searches, and it is approximate).
INDEX_MIN_POINTS = 100_000
# Points a process writes or scrolls through in a shard before reopening it (see the docstring).
RECYCLE_POINTS = 100_000
_HNSW = dict(m=16, ef_construct=64, full_scan_threshold=10_000)
SEARCH_EF = 256  # candidates an indexed search keeps: recall@5 0.94 on hashing vectors at 50k (0.91 at 128), under 1 ms
# An indexed search ranks by the int8 vectors, then rescores this many times ``limit`` candidates
# with the full vectors: the int8 order of close scores is not theirs.
OVERSAMPLING = 4.0
_WRITE_BATCH = 1024


class UnusableShard(ValueError):
    """Shard files that Qdrant Edge does not load (a damaged or foreign copy)."""


class LegacyVectorFolder(OperatorError, RuntimeError):
    """The folder holds qdrant-client local-mode files, which this engine does not read."""


def is_local_mode_folder(root: Path) -> bool:
    """qdrant-client's local mode keeps ``meta.json`` (and ``collection/<name>/storage.sqlite``),
    which ``vectors migrate`` leaves in place beside the shards it writes."""
    return (root / "meta.json").is_file() and not (root / MIGRATED).is_file()


def shard_config(dimension: int, hybrid: bool = False) -> edge.EdgeConfig:
    cold = edge.Memory.Cold
    # Segments merge up to one index batch of vectors, and one of half that is worth indexing
    # (sizes in KB of float32 vectors; the defaults would leave small vectors unindexed).
    segment_kb = max(2, INDEX_MIN_POINTS * dimension * 4 // 1024)
    return edge.EdgeConfig(
        vectors={VECTOR: edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine, memory=cold)},
        sparse_vectors={SPARSE: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)} if hybrid else None,
        payload_memory=cold,
        id_tracker_memory=cold,
        hnsw_config=edge.HnswIndexConfig(**_HNSW, memory=cold),
        quantization_config=edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8, memory=cold),
        optimizers=edge.EdgeOptimizersConfig(max_segment_size=segment_kb, indexing_threshold=segment_kb // 2),
    )


class _OpenShard:
    """A shard of this process. Operations use it inside ``use``; ``offline`` waits for them to
    end, closes it, and keeps it closed for its body; the next ``use`` opens it again."""

    def __init__(self, shard: edge.EdgeShard, wait_seconds: float, config: edge.EdgeConfig):
        self.shard: edge.EdgeShard | None = shard
        self.users, self.active, self.touched = 1, 0, 0
        self.wait_seconds, self.config = wait_seconds, config
        self.changing = threading.Condition(threading.RLock())

    @contextmanager
    def use(self, path: Path) -> Iterator[edge.EdgeShard]:
        with self.changing:  # waits while ``offline`` has it closed
            if self.shard is None:
                self.shard = _open_waiting(path, self.wait_seconds, self.config)
                _write_holder(path)
            self.active += 1
        try:
            yield self.shard
        finally:
            with self.changing:
                self.active -= 1
                self.changing.notify_all()

    @contextmanager
    def offline(self, path: Path) -> Iterator[None]:
        with self.changing:
            self.changing.wait_for(lambda: self.active == 0)
            self.close(path)
            self.touched = 0
            yield

    def close(self, path: Path) -> None:
        if self.shard is not None:
            _close(path, self.shard)
            self.shard = None


class _OpenShards:
    """The Edge shards this process has open, each with how many stores use it (``acquire``,
    ``release``); operations reach a shard through ``entry(path).use``, so it can be closed and
    reopened under them (``offline``, ``touch``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: dict[Path, _OpenShard] = {}
        self._opening: dict[Path, threading.Lock] = {}

    def acquire(self, path: Path, wait_seconds: float, config: edge.EdgeConfig) -> None:
        """Count one more user of the shard at ``path``, opening (or creating) it if this process
        has not yet."""
        with self._lock:
            opening = self._opening.setdefault(path, threading.Lock())
        with opening:
            with self._lock:
                if path in self._open:
                    self._open[path].users += 1
                    return
            shard = _open_waiting(path, wait_seconds, config)
            _write_holder(path)
            with self._lock:
                self._open[path] = _OpenShard(shard, wait_seconds, config)

    def entry(self, path: Path) -> _OpenShard:
        entry = self._open.get(path)
        if entry is None:
            raise CollectionNotFound(f"collection {path.name} was dropped")
        return entry

    def release(self, path: Path) -> None:
        with self._lock:
            entry = self._open.get(path)
            if entry is None:  # dropped meanwhile
                return
            entry.users -= 1
            if entry.users > 0:
                return
            del self._open[path]
        with entry.offline(path):
            pass

    def discard(self, path: Path) -> None:
        """Close the shard, whoever in this process uses it (it is being dropped)."""
        with self._lock:
            entry = self._open.pop(path, None)
        if entry is not None:
            with entry.offline(path):
                pass

    def offline(self, path: Path):
        """The shard closed in this process for the body (another process works on it); it is
        opened again when a user of this process next asks for it (a step that only indexed a
        collection never loads its index here), and users wait meanwhile."""
        return self.entry(path).offline(path)

    def touch(self, path: Path, points: int) -> None:
        """Count points written or scrolled through; past ``RECYCLE_POINTS``, reopen the shard."""
        entry = self._open.get(path)
        if entry is None:
            return
        with entry.changing:
            entry.touched += points
            if entry.touched < RECYCLE_POINTS:
                return
        with entry.offline(path):
            pass


_OPEN = _OpenShards()


def _write_manifest(path: Path, dimension: int, hybrid: bool) -> None:
    """Our ``collection.json`` beside a shard's files: what makes the folder a collection."""
    manifest = {"dimension": dimension, "distance": "cosine", "vector": VECTOR}
    _write_json(path / MANIFEST, manifest | ({"sparse_vector": SPARSE} if hybrid else {}))


def _filter(among: Sequence[str] | None, where: Mapping[str, str] | None) -> edge.Filter | None:
    must = [edge.HasIdCondition(set(among))] if among is not None else []
    must += [edge.FieldCondition(key, match=edge.MatchValue(value)) for key, value in (where or {}).items()]
    return edge.Filter(must=must) if must else None


def _copy_without_trailing_zeros(source: Path, dest: Path, block: int = 1 << 20) -> int:
    """Copy ``source`` to ``dest`` up to its last non-zero byte; returns ``source``'s length."""
    length = source.stat().st_size
    with open(source, "rb") as src, open(dest, "wb") as out:
        end = length
        while end > 0:  # back from the end, a block at a time, to the last block with data
            start = max(0, end - block)
            src.seek(start)
            kept = len(src.read(end - start).rstrip(b"\0"))
            end = start + kept
            if kept:
                break
        src.seek(0)
        remaining = end
        while remaining:
            data = src.read(min(block, remaining))
            if not data:
                raise OSError(f"{source} shrank while it was copied")
            out.write(data)
            remaining -= len(data)
    return length


def _open_waiting(path: Path, wait_seconds: float, config: edge.EdgeConfig) -> edge.EdgeShard:
    deadline = time.monotonic() + wait_seconds
    delay = 0.02
    while True:
        try:
            if not (path / "segments").is_dir():  # a create that died before its first segment
                return edge.EdgeShard.create(str(path), config)
            return edge.EdgeShard.load(str(path))
        except Exception as exc:  # Edge raises a plain Exception subclass; WouldBlock is the busy one
            if "WouldBlock" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise VectorStoreBusy(
                    f"collection {path.name} is held open by another process ({_holder(path)}) for longer "
                    f"than {wait_seconds:g} s: wait for that operation to end and retry; the embedded engine "
                    "opens a collection in one process at a time (a Qdrant server, OPS_QDRANT_URL, serves many)"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _close(path: Path, shard: edge.EdgeShard) -> None:
    try:
        (path / HOLDER).unlink(missing_ok=True)
    finally:
        shard.close()  # flushes what the WAL holds


def _write_holder(path: Path) -> None:
    facts = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:3])),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_json(path / HOLDER, facts)


def _holder(path: Path) -> str:
    try:
        facts = json.loads((path / HOLDER).read_text())
        return f"pid {facts['pid']} on {facts['host']}, {facts['command']!r}, since {facts['since']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


def _write_json(path: Path, value: dict) -> None:
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    partial.write_text(json.dumps(value))
    os.replace(partial, path)


def _safe_name(name: str) -> str:
    if not name or name.startswith(".") or "/" in name or "\0" in name or len(name) > 255:
        raise ValueError(f"{name!r} is not a collection name")
    return name


class EdgeVectorStore(VectorStore):
    keeps_aliases = False
    keeps_files = True

    def __init__(self, root: str | os.PathLike, wait_seconds: float = 120.0, allow_local_mode: bool = False):
        self.root = Path(root)
        if is_local_mode_folder(self.root) and not allow_local_mode:  # (the migration writes beside them)
            raise LegacyVectorFolder(
                f"{self.root} holds vectors written by qdrant-client's local mode (ops-pipelines before Qdrant "
                "Edge): copy them into the embedded engine with `ops-pipelines vectors migrate`, then retry"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.wait_seconds = wait_seconds
        self.description = f"Qdrant Edge in {self.root}"
        self._held: set[Path] = set()

    @property
    def index_batch(self) -> int:
        return INDEX_MIN_POINTS

    def _path(self, name: str) -> Path:
        return self.root / _safe_name(name)

    def _hold(self, name: str) -> Path:
        """The shard's path, opened for this store (waiting for another process to let go of it)."""
        path = self._path(name)
        if path not in self._held:
            dimension = self.collection_dimension(name)
            if dimension is None:
                raise CollectionNotFound(f"collection {name} does not exist in {self.description}")
            _OPEN.acquire(path, self.wait_seconds, shard_config(dimension, self.is_hybrid(name)))
            self._held.add(path)
        return path

    def _shard(self, name: str):
        """``with self._shard(name) as shard:`` for one operation on the shard."""
        return _OPEN.entry(self._hold(name)).use(self._path(name))

    # ---- collections ------------------------------------------------------------------------

    def collection_names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).is_file())

    def _manifest(self, name: str) -> dict | None:
        try:
            return json.loads((self._path(name) / MANIFEST).read_text())
        except FileNotFoundError:
            return None

    def collection_dimension(self, name: str) -> int | None:
        manifest = self._manifest(name)
        return None if manifest is None else int(manifest["dimension"])

    def is_hybrid(self, name: str) -> bool:
        manifest = self._manifest(name)
        if manifest is None:
            raise CollectionNotFound(f"collection {name} does not exist in {self.description}")
        return manifest.get("sparse_vector") == SPARSE

    def create_collection(self, name: str, dimension: int, hybrid: bool = False) -> None:
        path = self._path(name)
        if (path / MANIFEST).is_file():
            raise ValueError(f"collection {name} already exists")
        # A directory without our manifest is a create that died half way: nothing served it.
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        _write_manifest(path, dimension, hybrid)
        self._hold(name)

    def drop_collection(self, name: str) -> bool:
        if self.collection_dimension(name) is None:
            return False
        path = self._hold(name)  # waits for any other process to let go of it
        self._held.discard(path)
        _OPEN.discard(path)
        doomed = path.with_name(f".dropped-{name}-{uuid.uuid4().hex[:8]}")
        os.replace(path, doomed)
        shutil.rmtree(doomed)
        return True

    def copy_files(self, name: str, dest: Path) -> tuple[dict[str, int], np.ndarray]:
        """The collection's shard, flushed and copied file by file into ``dest`` (index included),
        and its point ids (a sorted id array); both taken while this process holds the shard, so no
        other process writes meanwhile. Each copy lacks its file's trailing zero bytes (Edge
        preallocates 32 MiB per WAL segment, vector chunk and payload page: 128 MiB for a
        collection of one point); returns each copy's path relative to ``dest`` with the length
        ``adopt_files`` restores."""
        source = self._hold(name)
        with self._shard(name) as shard:
            shard.flush()
            lengths = {}
            for path in sorted(p for p in source.rglob("*") if p.is_file() and p.name not in (HOLDER, MANIFEST)):
                relative = path.relative_to(source)
                (dest / relative).parent.mkdir(parents=True, exist_ok=True)
                lengths[relative.as_posix()] = _copy_without_trailing_zeros(path, dest / relative)
            return lengths, self.id_array(name)

    def adopt_files(self, name: str, source: Path, dimension: int, lengths: dict[str, int], hybrid: bool = False) -> None:
        """A new collection ``name`` made of the shard files ``copy_files`` copied, moved from the
        folder ``source`` once each file is back to its length (zeros appended); refused
        (``UnusableShard``, nothing left behind) if they do not load."""
        path = self._path(name)
        if (path / MANIFEST).is_file():
            raise ValueError(f"collection {name} already exists")
        if not (source / "segments").is_dir():
            raise UnusableShard(f"{source} holds no Qdrant Edge shard (no segments)")
        for relative, length in lengths.items():
            file = source / relative
            if not file.resolve().is_relative_to(source.resolve()) or not file.is_file() or file.stat().st_size > length:
                raise UnusableShard(f"shard file {relative} is missing or longer than its recorded {length} bytes")
            os.truncate(file, length)  # zeros, as holes
        shutil.rmtree(path, ignore_errors=True)
        shutil.move(source, path)
        _write_manifest(path, dimension, hybrid)
        try:
            with self._shard(name) as shard:
                shard.info()
        except Exception as exc:  # noqa: BLE001 - whatever Edge makes of the files, they are refused
            self._held.discard(path)
            _OPEN.discard(path)
            shutil.rmtree(path, ignore_errors=True)
            raise UnusableShard(f"the shard files of {name} do not load in Qdrant Edge: {exc}") from None

    def build_index(self, name: str) -> bool:
        with self._shard(name) as shard:
            info = shard.info()
        if info.points_count - info.indexed_vectors_count < INDEX_MIN_POINTS:
            return False
        # Edge's optimize holds the GIL until it is done (minutes at a million points): it runs in
        # a child process, so this one's threads (lease renewal, Dagster's) keep running.
        path = self._path(name)
        with _OPEN.offline(path):
            subprocess.run([sys.executable, "-m", "ops_pipelines.vectors.edge_optimize", str(path)], check=True)
        return True

    # ---- points -----------------------------------------------------------------------------

    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict]) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        hybrid = self.is_hybrid(name)
        for start in range(0, len(ids), _WRITE_BATCH):
            end = start + _WRITE_BATCH
            points = [
                edge.Point(pid, _point_vectors(vector, payload, hybrid), payload)
                for pid, vector, payload in zip(ids[start:end], vectors[start:end].tolist(), payloads[start:end], strict=True)
            ]
            with self._shard(name) as shard:
                shard.update(edge.UpdateOperation.upsert_points(points))
            _OPEN.touch(self._path(name), len(points))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), _WRITE_BATCH):
            with self._shard(name) as shard:
                shard.update(edge.UpdateOperation.delete_points(list(ids[start : start + _WRITE_BATCH])))

    def pages(
        self, name: str, with_payload: bool | list[str] = False, with_vectors: bool = False, page: int = 4096
    ) -> Iterator[PointPage]:
        offset = None
        while True:
            with self._shard(name) as shard:
                points, offset = shard.scroll(
                    edge.ScrollRequest(offset=offset, limit=page, with_payload=with_payload, with_vector=with_vectors)
                )
            if with_payload or with_vectors:  # (ids alone touch little)
                _OPEN.touch(self._path(name), len(points))
            yield PointPage(
                np.frombuffer(b"".join(p.id.bytes for p in points), dtype=DTYPE),
                [p.payload or {} for p in points] if with_payload else None,
                np.array([p.vector[VECTOR] for p in points], dtype=np.float32) if with_vectors else None,
            )
            if offset is None:
                return

    def id_array(self, name: str) -> np.ndarray:
        # Edge scrolls in id order: the pages fill one array (small pages: each point of a page is
        # a Python object until the page is read).
        return sorted_ids((page.ids for page in self.pages(name, page=2048)), self.count(name))

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        with self._shard(name) as shard:
            records = shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        return [_stored(r, with_vectors) for r in records]

    def count(self, name: str) -> int:
        with self._shard(name) as shard:
            return shard.count(edge.CountRequest(exact=True))

    def create_field_index(self, name: str, key: str) -> None:
        with self._shard(name) as shard:
            shard.update(edge.UpdateOperation.create_field_index(key, edge.PayloadSchemaType.Keyword))

    def search(
        self,
        name: str,
        vector: np.ndarray,
        limit: int = 5,
        exact: bool = False,
        among: Sequence[str] | None = None,
        text: str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[Hit]:
        params = (
            edge.SearchParams(exact=True, quantization=edge.QuantizationSearchParams(ignore=True))
            if exact
            else edge.SearchParams(
                hnsw_ef=SEARCH_EF, quantization=edge.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
            )
        )
        dense = edge.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist(), using=VECTOR)
        found_by = _filter(among, where)
        if text is not None and self.is_hybrid(name):
            fetched = prefetch_limit(limit)
            request = edge.QueryRequest(
                prefetches=[
                    edge.Prefetch(fetched, query=dense, params=params, filter=found_by),
                    edge.Prefetch(fetched, query=edge.Query.Nearest(edge.SparseVector(*query_terms(text)), using=SPARSE),
                                  filter=found_by),
                ],
                query=edge.Fusion.Rrf(RRF_K),
                limit=limit,
                with_payload=True,
                with_vector=False,
            )
        else:
            request = edge.QueryRequest(
                query=dense, limit=limit, with_payload=True, with_vector=False, params=params, filter=found_by
            )
        with self._shard(name) as shard:
            found = shard.query(request)
        return [Hit(str(p.id), p.score, p.payload or {}) for p in found]

    def release(self, name: str) -> None:
        # the shard is closed (its pages unmapped) unless another store of this process uses it
        path = self._path(name)
        if path in self._held:
            self._held.discard(path)
            _OPEN.release(path)

    def close(self) -> None:
        for path in self._held:
            _OPEN.release(path)
        self._held.clear()


def _point_vectors(vector: list[float], payload: dict, hybrid: bool) -> dict:
    if not hybrid:
        return {VECTOR: vector}
    return {VECTOR: vector, SPARSE: edge.SparseVector(*document_terms(payload.get("text", "")))}


def _stored(record, with_vectors: bool) -> StoredPoint:
    vector = np.asarray(record.vector[VECTOR], dtype=np.float32) if with_vectors else None
    return StoredPoint(str(record.id), record.payload, vector)

