"""Scale benchmark (issue 14): every day-2 operation on one synthetic container of N chunks, each
step in a fresh process, with its seconds and its peak memory.

Run:  .venv/bin/python bench/scale.py [--chunks 100000,1000000] [--workdir DIR] [--keep] [--keep-going]
                                      [--code PATH] [--baseline OLD.json] [--out bench/scale.json]
                                      [--again STEP,...]

For each size, in its own folder under ``--workdir`` (a fresh temp folder by default, deleted at
the end; a failed run keeps it), with ``DAGSTER_HOME``, ``OPS_QDRANT_PATH``, ``OPS_OBJECTS_DIR``
and ``TMPDIR`` pointing into it (the KB is SQLite under ``DAGSTER_HOME``):

* ``generate corpus``: a folder of Markdown documents, 5 paragraphs each, every paragraph one
  chunk of the default chunker (450-730 characters: two never pack into 800, the heading packs
  with the first); words drawn Zipf-like from a seeded vocabulary of 20,000 made-up words, so
  the hashing vectors differ. ``--chunks N`` gives ceil(N / 5) documents.
* the real CLI (``python -m ops_pipelines.cli``) with ``PYTHONPATH`` at ``--code`` (default:
  this checkout): ``container add`` (``hash-256@1``), full ``sync``; ``index build``; ``index
  recall``; ``search`` (one query, a cold process); ``search x200`` (one process, the store
  opened once: the first query, then p50/p95 of the other 200); unchanged re-sync; ``mutate 1%``
  (1% of the documents rewritten); the ``1% changed`` re-sync; ``refresh`` (shadow generation
  from the embedding cache, its checks and the swap); ``backup create``; ``restore --force`` of
  that backup onto the same KB; ``export``; ``import`` of that archive as another slug.
* ``index build`` is the live collection's HNSW build. When the sync built it already (its log
  says ``index built in``), the row shows that build: its seconds from the log, its memory from
  the optimizer process the sync ran (``EdgeVectorStore.build_index`` runs Edge's optimize in a
  child process). Otherwise a process of this script calls ``build_index`` and the row is it.
* ``index recall`` (a probe, not an operation: no target) compares the live collection's
  searches with exact ones: recall@5 of the search queries, and self-recall@1, stored points
  queried with their own vectors as the ``self_retrieval`` check does (it needs all of its 20
  sampled chunks back at rank 1, so it passes with about self-recall^20).

Columns. ``seconds``: wall time of the process, start-up included (1-3 s of imports on an idle
machine). ``peak_rss_mb``: ``ru_maxrss`` of the step's process from ``wait4``, the largest of it
and its children (the optimizer); it counts the page cache pages of Edge's memory-mapped shards
that the process touched, which the kernel reclaims at will. ``peak_anon_mb``: RssAnon (memory
only swap could take back) summed over the process and its children (the optimizer, Dagster's
compute-log watchers; a child forked but not exec'd yet is left out, its pages are its
parent's), sampled at 20 Hz: the memory the step really needs. ``index_s``: the HNSW builds the
step's log reports; ``work_s`` is ``seconds`` without them. ``index_rss_mb``, ``index_anon_mb``:
the optimizer process's VmHWM and RssAnon, sampled. ``disk_mb``: the size folder after the step
(``du``); ``disk_peak_mb``: its highest during the step, estimated as the larger of that and the
folder before the step plus the peak of ``TMPDIR`` (sampled every 0.5 s), where restores extract
and archives are staged. Below the table: each CLI run's Dagster steps with their seconds (from
the run's event log) and the step during which the anonymous memory peaked. The parent stays
small (no pandas until the end): ``wait4``'s ``ru_maxrss`` starts at the parent's own high-water
mark (the child is exec'd from the parent's memory); the JSON records it (``parent_maxrss_mb``).

Targets (issue 14, at 1M chunks on 2 cores), checked at the largest size: full sync <= 10 min,
unchanged re-sync <= 60 s, refresh <= 5 min without its index build, restore <= 5 min, search
p95 <= 50 ms once indexed, every step's peak memory <= 2 GB and within 1.5x of the smaller
size's (the smallest size of this run, or the largest of ``--baseline``, an earlier run's JSON).

``--again backup_and_restore,export_and_import`` (the names of ``STEPS``) measures those steps
once more in the size folders an earlier run kept (``--keep`` and the same ``--workdir`` and
``--chunks``), e.g. with another ``--code``: the rows are those steps' alone. The containers an
earlier import added are removed first (a backup would hold them too), and the import goes to a
slug of its own. Nothing is generated or synced again.

A step that fails stops the benchmark with its output's tail, after the table of what ran;
``--keep-going`` records it (``FAILED`` in ``detail``) and goes on with the next steps (not after
a failed corpus, container or full sync); either way the exit status is 1. Nothing is skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

# Nothing heavy at module level: the parent's memory is every child's ru_maxrss floor.

SLUG, COPY_SLUG, EMBEDDER = "scale", "scale-copy", "hash-256@1"
PARAGRAPHS = 5  # chunks per document
VOCABULARY = 20_000
QUERIES = 200
GATE_SAMPLE = 20  # chunks the self_retrieval check samples, each of which must come back first
SAMPLE_SECONDS = 0.05
TMP_EVERY = 10  # samples between two measures of TMPDIR's size
RESULT_PREFIX = "SCALE-RESULT "
REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20
GB_MB = 2048

TARGETS = [  # (step, column, limit, unit): checked at the largest size
    ("full sync", "seconds", 600, "s"),
    ("unchanged re-sync", "seconds", 60, "s"),
    ("refresh", "work_s", 300, "s"),
    ("restore", "seconds", 300, "s"),
    ("search x200", "p95_ms", 50, "ms"),
]
MEMORY = ("peak_rss_mb", "peak_anon_mb")
RATIO_LIMIT = 1.5
COLUMNS = [
    "chunks", "step", "seconds", "peak_rss_mb", "peak_anon_mb", "index_s", "work_s",
    "index_rss_mb", "index_anon_mb", "disk_mb", "disk_peak_mb", "detail",
]


# ---- the corpus (child side) ------------------------------------------------------------------

def vocabulary(seed: int) -> list[str]:
    """Made-up words of 1-4 syllables in a seeded order; rank r is drawn with weight 1/(r+10)."""
    rng = random.Random(f"vocab:{seed}")
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        words["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))] = None
    return list(words)


class Words:
    """The vocabulary and its draws (numpy is imported here: only the children use it)."""

    def __init__(self, seed: int):
        import numpy as np

        self.np, self.words = np, vocabulary(seed)
        weights = 1 / (np.arange(len(self.words)) + 10)
        self.cdf = np.cumsum(weights) / weights.sum()

    def rng(self, *key: int):
        return self.np.random.default_rng(list(key))

    def draw(self, rng, n: int) -> list[str]:
        return [self.words[i] for i in self.np.searchsorted(self.cdf, rng.random(n)).tolist()]


def _sentences(words: list[str]) -> str:
    """The words as sentences of 12."""
    sentences = (" ".join(words[i : i + 12]) for i in range(0, len(words), 12))
    return " ".join(s[0].upper() + s[1:] + "." for s in sentences)


def document(words: Words, seed: int, index: int, revision: int = 0) -> str:
    """A heading and ``PARAGRAPHS`` paragraphs of 450-730 characters: each paragraph is one
    chunk of ``para-800@1`` (two would exceed 800), and the heading (48 at most) joins the first."""
    rng = words.rng(seed, index, revision)
    title = " ".join(words.draw(rng, int(rng.integers(3, 6))))[:48].strip().capitalize()
    paragraphs = []
    for target in rng.integers(450, 700, PARAGRAPHS).tolist():
        drawn, length = [], 0
        for word in words.draw(rng, 200):
            drawn.append(word)
            length += len(word) + 1
            if length >= target:
                break
        paragraphs.append(_sentences(drawn))
    return f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n"


def doc_path(root: Path, index: int) -> Path:
    return root / f"part-{index // 1000:04d}" / f"doc-{index:07d}.md"


def changed_documents(seed: int, documents: int) -> list[int]:
    """The 1% of documents the ``1% changed`` step rewrites."""
    return sorted(random.Random(f"mutate:{seed}").sample(range(documents), max(1, documents // 100)))


def child_generate(p: dict) -> dict:
    import ops_pipelines
    from ops_pipelines.chunking import chunk_text
    from ops_pipelines.sources.extract import EXTRACTORS

    root, words = Path(p["corpus"]), Words(p["seed"])
    documents = math.ceil(p["chunks"] / PARAGRAPHS)
    chunks = size = 0
    for i in range(documents):
        path = doc_path(root, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = document(words, p["seed"], i)
        path.write_text(text)
        size += len(text)
        chunks += len(chunk_text(EXTRACTORS[".md"](path.name)(text.encode()).text))
    return {"documents": documents, "chunks": chunks, "corpus_mb": size / MB, "code": ops_pipelines.__file__}


def child_count(p: dict) -> dict:
    """What a kept size folder holds (``--again``)."""
    from ops_pipelines import settings
    from ops_pipelines.ingest import serving_chunker
    from ops_pipelines.kb import KnowledgeBase

    kb = KnowledgeBase(settings.kb_url())
    try:
        container = kb.get_container(SLUG)
        chunks = kb.count_active_chunks(container.id, serving_chunker(kb, container))
        return {"documents": kb.count_documents(container.id)["active"], "chunks": chunks,
                "copies": [c.slug for c in kb.list_containers() if c.slug != SLUG]}
    finally:
        kb.close()


def child_mutate(p: dict) -> dict:
    root, words = Path(p["corpus"]), Words(p["seed"])
    changed = changed_documents(p["seed"], p["documents"])
    for i in changed:
        doc_path(root, i).write_text(document(words, p["seed"], i, revision=1))
    return {"documents": len(changed), "chunks": len(changed) * PARAGRAPHS}


# ---- index and search (child side) ------------------------------------------------------------

def child_index(p: dict) -> dict:
    from ops_pipelines import settings
    from ops_pipelines.kb import KnowledgeBase
    from ops_pipelines.vectors import EdgeVectorStore

    kb = KnowledgeBase(settings.kb_url())
    try:
        collection = kb.live_generation(kb.get_container(SLUG).id).collection
    finally:
        kb.close()
    store = EdgeVectorStore(settings.qdrant_path())
    try:
        started = time.perf_counter()
        built = store.build_index(collection)
        return {"built": built, "seconds": time.perf_counter() - started, "collection": collection}
    finally:
        store.close()


def queries(words: "Words", seed: int) -> list[str]:
    rng = words.rng(seed, 1 << 20)  # not a document's key
    return [" ".join(words.draw(rng, int(rng.integers(3, 9)))) for _ in range(QUERIES + 1)]


def child_search(p: dict) -> dict:
    import numpy as np

    from ops_pipelines import settings
    from ops_pipelines.kb import KnowledgeBase
    from ops_pipelines.search import search_container
    from ops_pipelines.vectors import open_vector_store

    kb = KnowledgeBase(settings.kb_url())
    try:
        with open_vector_store(path=settings.qdrant_path()) as store:
            times = []
            for query in queries(Words(p["seed"]), p["seed"]):
                started = time.perf_counter()
                hits = search_container(kb, store, SLUG, query, 5)
                times.append((time.perf_counter() - started) * 1000)
                if len(hits) != 5:
                    raise RuntimeError(f"{query!r}: {len(hits)} hits, 5 asked for")
    finally:
        kb.close()
    rest = np.array(times[1:])
    return {"first_ms": times[0], "p50_ms": float(np.percentile(rest, 50)),
            "p95_ms": float(np.percentile(rest, 95)), "max_ms": float(rest.max())}


def child_recall(p: dict) -> dict:
    """How much of an exact search the live collection's searches find: recall@5 of the search
    queries, and self-recall@1 (stored points queried with their own vectors, as the
    ``self_retrieval`` check does) on the 200 smallest ids."""
    import numpy as np

    from ops_pipelines import settings
    from ops_pipelines.embedders import load_embedder
    from ops_pipelines.kb import KnowledgeBase
    from ops_pipelines.vectors import EdgeVectorStore

    kb = KnowledgeBase(settings.kb_url())
    try:
        collection = kb.live_generation(kb.get_container(SLUG).id).collection
    finally:
        kb.close()
    store = EdgeVectorStore(settings.qdrant_path())
    try:
        def exact(vector: np.ndarray) -> set[str]:
            return {h.id for h in store.search(collection, vector, 5, exact=True)}

        vectors = load_embedder(EMBEDDER).embed_queries(queries(Words(p["seed"]), p["seed"]))
        recall = [len({h.id for h in store.search(collection, v, 5)} & exact(v)) / 5 for v in vectors]
        first = next(store.pages(collection, with_vectors=True, page=QUERIES))  # in id order: the smallest ids
        found = [store.search(collection, v, 1)[0].id == i for i, v in zip(first.id_strings(), first.vectors)]
    finally:
        store.close()
    return {"recall_at_5": float(np.mean(recall)), "self_recall_at_1": float(np.mean(found))}


CHILDREN = {"generate": child_generate, "mutate": child_mutate, "index": child_index, "recall": child_recall,
            "search": child_search, "count": child_count}


# ---- measuring one step (parent side) ---------------------------------------------------------

class StepFailed(RuntimeError):
    pass


def _status(pid: int) -> dict[str, int]:
    """RssAnon and VmHWM of a process, in kB (empty if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = (line.partition(":") for line in f)
            return {k: int(v.split()[0]) for k, _, v in fields if k in ("RssAnon", "VmHWM")}
    except (OSError, ValueError):
        return {}


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += map(int, f.read().split())
    except OSError:
        pass
    return found


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


class Sampler(threading.Thread):
    """Samples a process and its descendants every ``SAMPLE_SECONDS``: the peak of their summed
    RssAnon and when it was, the optimizer processes' peak RssAnon and VmHWM; every ``TMP_EVERY``,
    the size of the step's ``TMPDIR`` (where restores extract and archives are staged)."""

    def __init__(self, pid: int, tmp: Path):
        super().__init__(daemon=True)
        self.pid, self.tmp = pid, tmp
        self.peak_anon = self.index_anon = self.index_hwm = self.tmp_peak = 0
        self.peak_at = 0.0  # epoch seconds of the anonymous memory's peak
        self.samples, self._done = 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        anon, cmdlines, todo = 0, {}, [(self.pid, None)]
        while todo:
            pid, parent = todo.pop()
            cmdline = _cmdline(pid)
            if parent is not None and cmdline == cmdlines.get(parent):
                continue  # forked and not exec'd yet: its pages are its parent's, copy-on-write
            cmdlines[pid] = cmdline
            todo += [(child, pid) for child in _children(pid)]
            status = _status(pid)
            anon += status.get("RssAnon", 0)
            if parent is not None and b"edge_optimize" in cmdline:
                self.index_anon = max(self.index_anon, status.get("RssAnon", 0))
                self.index_hwm = max(self.index_hwm, status.get("VmHWM", 0))
        if anon > self.peak_anon:
            self.peak_anon, self.peak_at = anon, time.time()
        if self.samples % TMP_EVERY == 0:
            self.tmp_peak = max(self.tmp_peak, disk_bytes(self.tmp))
        self.samples += 1

    def stop(self) -> None:
        self._done.set()
        self.join()


def disk_bytes(root: Path) -> int:
    """The disk space the files below ``root`` take (vanishing ones skipped)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                pass
    return total


def du_mb(path: Path) -> float:
    du = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(du.stdout.split()[0]) / 1024


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Size:
    """One size's folder, environment and rows."""

    def __init__(self, chunks: int, root: Path, code: Path, seed: int, kept: bool = False):
        self.chunks, self.root, self.seed, self.rows = chunks, root, seed, []
        self.home, self.corpus, self.logs = root / "home", root / "corpus", root / "logs"
        for d in (self.home, self.logs, root / "tmp"):
            d.mkdir(parents=True, exist_ok=kept)
        if not kept:
            shutil.copy(REPO / "dagster.yaml", self.home / "dagster.yaml")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OPS_", "DAGSTER_"))}
        self.env |= {
            "PYTHONPATH": str(code), "DAGSTER_HOME": str(self.home), "OPS_QDRANT_PATH": str(root / "qdrant"),
            "OPS_OBJECTS_DIR": str(root / "objects"), "TMPDIR": str(root / "tmp"),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        }
        self.disk = du_mb(root)

    def run(self, step: str, argv: list[str], kind: str = "measured") -> dict:
        """Run ``argv`` as a fresh process, measured; its stdout and stderr go to ``logs/``. A
        process that fails still gets its row (``detail`` says why), then raises ``StepFailed``."""
        name = f"{len(self.rows):02d}-{re.sub(r'[^a-z0-9]+', '-', step.lower()).strip('-')}"
        name = name if not (self.logs / f"{name}.out").exists() else f"{name}-{int(time.time())}"  # --again
        out, err = self.logs / f"{name}.out", self.logs / f"{name}.err"
        print(f"[{self.chunks}] {step} ...", end=" ", flush=True)
        runs_before = run_databases(self.home)
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            started = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=self.env, cwd=self.root)
            sampler = Sampler(proc.pid, self.root / "tmp")
            sampler.start()
            # wait4, not proc.wait(): its rusage is this child's (and its reaped children's) alone.
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            sampler.stop()
        text, errors = out.read_text(errors="replace"), err.read_text(errors="replace")
        index = [float(s) for s in re.findall(r"index built in ([0-9.]+) s", text + errors)]
        steps = dagster_steps(run_databases(self.home) - runs_before)
        row = {
            "chunks": self.chunks, "step": step, "kind": kind, "seconds": seconds,
            "peak_rss_mb": usage.ru_maxrss / 1024, "peak_anon_mb": sampler.peak_anon / 1024,
            "index_s": sum(index) if index else None, "work_s": seconds - sum(index),
            "index_rss_mb": sampler.index_hwm / 1024 or None, "index_anon_mb": sampler.index_anon / 1024 or None,
            "disk_mb": du_mb(self.root), "samples": sampler.samples, "failed": None,
            "dagster_s": {key: end - start for key, (start, end) in steps.items()},
            "anon_peak_in": next((k for k, (start, end) in steps.items() if start <= sampler.peak_at <= end), None),
            "stdout": text, "detail": "",
        }
        # The highest the folder can have been: before or after the step, or before plus TMPDIR's peak.
        row["disk_peak_mb"] = max(self.disk + sampler.tmp_peak / MB, row["disk_mb"])
        self.disk = row["disk_mb"]
        self.rows.append(row)
        print(f"{seconds:.1f} s, rss {row['peak_rss_mb']:.0f} MB, anon {row['peak_anon_mb']:.0f} MB", flush=True)
        if proc.returncode:
            fail(row, f"exit {proc.returncode}: {reason(errors)}",
                 f"{' '.join(argv)}\n--- stdout ({out}) ---\n{tail(out)}\n--- stderr ({err}) ---\n{tail(err)}")
        return row

    def cli(self, step: str, *args: str) -> dict:
        return self.run(step, [sys.executable, "-m", "ops_pipelines.cli", *args])

    def child(self, step: str, name: str, kind: str = "measured", **params) -> dict:
        row = self.run(step, [sys.executable, __file__, "--child", name, "--params", json.dumps(params)], kind)
        lines = [line for line in row["stdout"].splitlines() if line.startswith(RESULT_PREFIX)]
        if not lines:
            fail(row, "the child printed no result", row["stdout"])
        row["result"] = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
        return row


def fail(row: dict, why: str, output: str):
    row["failed"] = why
    row["detail"] = f"FAILED: {why}"
    raise StepFailed(f"{row['step']} failed: {why}\n{output}")


def reason(errors: str) -> str:
    """The gist of a failed CLI's stderr: the checks that failed, else its last ``Error:`` line."""
    failed_checks = re.findall(r"check\s+FAIL\s+(.+)", errors)
    if failed_checks:
        return "; ".join(failed_checks)
    errors_said = [line for line in errors.splitlines() if line.startswith("Error:")]
    return (errors_said or errors.strip().splitlines() or ["no output"])[-1][:200]


def run_databases(home: Path) -> set[Path]:
    """The event logs of the instance's runs: the SQLite storage keeps one per run,
    ``history/runs/<run id>.db``."""
    return {p for p in (home / "history" / "runs").glob("*.db") if p.stem != "index"}


def dagster_steps(databases: set[Path]) -> dict[str, tuple[float, float]]:
    """Each Dagster step of these runs: (start, end) in epoch seconds."""
    steps: dict[str, tuple[float, float]] = {}
    for db in sorted(databases):
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            events = conn.execute(
                "SELECT step_key, dagster_event_type, timestamp FROM event_logs WHERE dagster_event_type IN "
                "('STEP_START', 'STEP_SUCCESS', 'STEP_FAILURE') ORDER BY id"
            ).fetchall()
        for key, kind, stamp in events:
            at = datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
            steps[key] = (at, at) if kind == "STEP_START" else (steps.get(key, (at, at))[0], at)
    return steps


def expect(row: dict, pattern: str, wanted: tuple | None = None) -> tuple[int, ...]:
    """The integers ``pattern`` captures in a CLI step's output; ``wanted`` (if given) must match."""
    found = re.search(pattern, row["stdout"])
    if found is None:
        fail(row, f"no {pattern!r} in its output", row["stdout"])
    values = tuple(int(v) for v in found.groups())
    if wanted is not None and values != wanted:
        fail(row, f"{pattern!r} gave {values}, expected {wanted}", row["stdout"])
    return values


SYNC_POINTS = r"(\d+) upserted, (\d+) deleted, (\d+) points"


# ---- the steps of one size, in order; each may read what earlier ones left in ``state`` -------

def generate(size: Size, state: dict) -> None:
    row = size.child("generate corpus", "generate", kind="setup", corpus=str(size.corpus), chunks=size.chunks,
                     seed=size.seed)
    gen = row["result"]
    state["documents"], state["chunks"] = gen["documents"], gen["chunks"]
    row["detail"] = f"{gen['documents']} documents, {gen['chunks']} chunks, {gen['corpus_mb']:.0f} MB ({gen['code']})"
    size.chunks = row["chunks"] = gen["chunks"]


def add_container(size: Size, state: dict) -> None:
    size.cli("container add", "container", "add", "--slug", SLUG, "--source", f"folder:{size.corpus}",
             "--embedder", EMBEDDER)


def full_sync(size: Size, state: dict) -> None:
    state["full"] = full = size.cli("full sync", "sync", SLUG)
    expect(full, SYNC_POINTS, (state["chunks"], 0, state["chunks"]))
    full["detail"] = f"{state['chunks']} upserted"


def index_build(size: Size, state: dict) -> None:
    index, full = size.child("index build", "index"), state["full"]
    built = index.pop("result")
    if built["built"]:
        index["index_s"], index["work_s"] = built["seconds"], index["seconds"] - built["seconds"]
        index["detail"] = f"build_index({built['collection']}) in a process of its own"
    elif full["index_s"] is not None:
        index |= {"seconds": full["index_s"], "work_s": None, "index_s": full["index_s"],
                  "peak_rss_mb": full["index_rss_mb"], "peak_anon_mb": full["index_anon_mb"],
                  "detail": "built by the full sync: its optimizer process's seconds (log) and memory (sampled)"}
    else:
        index["detail"] = "not built: build_index found too few unindexed points (brute force search)"


def index_recall(size: Size, state: dict) -> None:
    recall = size.child("index recall", "recall", kind="probe", seed=size.seed)
    found = recall.pop("result")
    recall |= found
    recall["detail"] = (f"recall@5 {found['recall_at_5']:.3f} of an exact search; self-recall@1 "
                        f"{found['self_recall_at_1']:.3f}: {GATE_SAMPLE} chunks all at rank 1 (self_retrieval) "
                        f"has p = {found['self_recall_at_1'] ** GATE_SAMPLE:.2f}")


def search_cold(size: Size, state: dict) -> None:
    size.cli("search", "search", SLUG, "record owner check", "--limit", "5")["detail"] = "one query, cold process"


def search_warm(size: Size, state: dict) -> None:
    search = size.child("search x200", "search", seed=size.seed)
    stats = search.pop("result")
    search |= stats
    search["detail"] = (f"first {stats['first_ms']:.1f} ms, then {QUERIES}: p50 {stats['p50_ms']:.1f} ms, "
                        f"p95 {stats['p95_ms']:.1f} ms, max {stats['max_ms']:.1f} ms")


def unchanged_sync(size: Size, state: dict) -> None:
    unchanged = size.cli("unchanged re-sync", "sync", SLUG)
    expect(unchanged, SYNC_POINTS, (0, 0, state["chunks"]))
    unchanged["detail"] = "0 upserted, 0 deleted"


def changed_sync(size: Size, state: dict) -> None:
    mutated = size.child("mutate 1%", "mutate", kind="setup", corpus=str(size.corpus), documents=state["documents"],
                         seed=size.seed)
    changed = mutated.pop("result")
    mutated["detail"] = f"{changed['documents']} documents rewritten"
    resync = size.cli("1% changed re-sync", "sync", SLUG)
    expect(resync, SYNC_POINTS, (changed["chunks"], changed["chunks"], state["chunks"]))
    resync["detail"] = f"{changed['chunks']} upserted, {changed['chunks']} deleted"


def refresh(size: Size, state: dict) -> None:
    refreshed = size.cli("refresh", "refresh", SLUG)
    upserted, points = expect(refreshed, r"(\d+) upserted, \d+ deleted, (\d+) points")
    passed = len(re.findall(r"check\s+pass", refreshed["stdout"]))
    if points != state["chunks"] or not re.search(r"swap\s+kb_", refreshed["stdout"]):
        fail(refreshed, f"{points} points for {state['chunks']} chunks, or no swap", refreshed["stdout"])
    refreshed["detail"] = f"{upserted} upserted, {passed} checks passed, swapped"


def backup_and_restore(size: Size, state: dict) -> None:
    backup = size.cli("backup create", "backup", "create")
    (backup_bytes,) = expect(backup, r"\((\d+) bytes\)")
    backup["detail"] = f"{backup_bytes / MB:.0f} MB archive"
    restore = size.cli("restore", "restore", "latest", "--force")
    phases = re.search(r"seconds\s+(.+)", restore["stdout"])
    restore["phases"] = {k: float(v) for k, v in re.findall(r"(\w+) ([0-9.]+)", phases.group(1))} if phases else {}
    restore["detail"] = ", ".join(f"{k} {v:.1f}" for k, v in restore["phases"].items())


def export_and_import(size: Size, state: dict) -> None:
    export = size.cli("export", "export", SLUG)
    (export_bytes,) = expect(export, r"tar, (\d+) bytes")
    export["detail"] = f"{export_bytes / MB:.0f} MB archive"
    archive = max((size.root / "objects" / "exports").glob("*/*.tar"), key=lambda p: p.stat().st_mtime)
    slug = state.get("copy_slug", COPY_SLUG)
    imported = size.cli("import", "import", str(archive.relative_to(size.root / "objects")), "--slug", slug)
    expect(imported, r"(\d+) chunks, \d+ blobs", (state["chunks"],))
    imported["detail"] = f"as {slug}, {state['chunks']} chunks, vectors from the archive"


STEPS = [generate, add_container, full_sync, index_build, index_recall, search_cold, search_warm, unchanged_sync,
         changed_sync, refresh, backup_and_restore, export_and_import]
NEEDED = 3  # the first three: nothing after them can run without them


def bench_size(size: Size, keep_going: bool, again: list | None = None) -> bool:
    """Every step on one size (or the ``again`` ones on a kept folder); False if one failed (with
    ``keep_going``, the others still ran)."""
    state, passed = {}, True
    if again:
        kept = size.child("what the kept folder holds", "count", kind="setup")
        state = kept.pop("result") | {"copy_slug": f"{COPY_SLUG}-{int(time.time())}"}
        size.chunks = kept["chunks"] = state["chunks"]
        for copy in state.pop("copies"):  # what an earlier import added: the backup would hold it too
            size.cli(f"remove {copy}", "container", "remove", copy, "--force")["kind"] = "setup"
    try:
        for n, step in enumerate(again or STEPS):
            try:
                step(size, state)
            except StepFailed as exc:
                if not keep_going or (n < NEEDED and not again):
                    raise
                print(f"\n{exc}\n(--keep-going: on with the next step)", flush=True)
                passed = False
    finally:
        for r in size.rows:
            r.pop("stdout", None)
    return passed


# ---- the report -------------------------------------------------------------------------------

def at_largest(rows: list[dict]) -> dict[str, dict]:
    largest = max(r["chunks"] for r in rows)
    return {r["step"]: r for r in rows if r["chunks"] == largest}


def time_targets(rows: list[dict], again: bool = False) -> list[dict]:
    at, largest = at_largest(rows), max(r["chunks"] for r in rows)
    found = []
    for step, column, limit, unit in TARGETS:
        if again and step not in at:
            continue  # not measured again
        row = at.get(step, {"failed": "not run"})
        value = row.get(column)
        found.append({"chunks": largest, "target": f"{step}: {column} <= {limit} {unit}", "value": value,
                      "failed": row["failed"], "met": not row["failed"] and value is not None and value <= limit})
    return found


def memory_targets(rows: list[dict], base_rows: list[dict]) -> list[dict]:
    """Each measured step's peak memory at the largest size: <= 2 GB, and its ratio to the base
    size's figure (``_x``) <= 1.5."""
    base = {r["step"]: r for r in base_rows}
    found = []
    for step, r in at_largest(rows).items():
        if r["kind"] != "measured":
            continue
        entry, missed = {"chunks": r["chunks"], "step": step}, []
        for column in MEMORY:
            value, before = r[column], base.get(step, {}).get(column)
            ratio = value / before if value is not None and before else None
            entry |= {column: value, column.replace("_mb", "_x"): ratio}
            if value is None or value > GB_MB:
                missed.append(f"{column} over {GB_MB} MB")
            if ratio is not None and ratio > RATIO_LIMIT:
                missed.append(f"{column} {ratio:.2f}x")
        if r["failed"]:
            missed.append("the step failed")
        entry["base_chunks"] = base[step]["chunks"] if step in base else None
        entry["verdict"] = "MISSED: " + ", ".join(missed) if missed else "met"
        found.append(entry)
    return found


def machine() -> dict:
    from importlib import metadata

    return {
        "cpus_usable": len(os.sched_getaffinity(0)), "python": sys.version.split()[0], "platform": platform.platform(),
        "memory_mb": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / MB,
        "packages": {p: metadata.version(p) for p in ("qdrant-edge-py", "dagster", "sqlalchemy", "numpy")},
    }


def git_commit(code: Path) -> str:
    run = subprocess.run(["git", "-C", str(code), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return run.stdout.strip() or "unknown"


def report(rows: list[dict], base_rows: list[dict], out: Path, config: dict, loads: list) -> None:
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before pandas
    import pandas as pd

    table = pd.DataFrame(rows, columns=COLUMNS)
    table["detail"] = table["detail"].str.slice(0, 110)
    numeric = [c for c in COLUMNS if c not in ("chunks", "step", "detail")]
    table[numeric] = table[numeric].astype(float)
    with pd.option_context("display.width", 250, "display.max_colwidth", 90):
        print()
        print(table.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.1f}"))
    timed, memory = time_targets(rows, bool(config.get("again"))), memory_targets(rows, base_rows)
    print()
    for t in timed:
        value = "-" if t["value"] is None else f"{t['value']:.1f}"
        failed = f" (the step failed: {t['failed']})" if t["failed"] else ""
        print(f"{'met   ' if t['met'] else 'MISSED'}  at {t['chunks']} chunks, {t['target']}: {value}{failed}")
    print("\nDagster steps of each run (seconds), and the one where anonymous memory peaked:")
    for r in rows:
        if r["dagster_s"]:
            steps = ", ".join(f"{k} {v:.1f}" for k, v in r["dagster_s"].items())
            print(f"  {r['chunks']:>8} {r['step']:<19} {steps}; peak in {r['anon_peak_in'] or '-'}")
    base = f"<= {RATIO_LIMIT}x the {base_rows[0]['chunks']}-chunk figure (_x)" if base_rows else "no base size"
    print(f"\npeak memory at {max(r['chunks'] for r in rows)} chunks: <= {GB_MB} MB; {base}")
    if memory:
        memory_table = pd.DataFrame(memory).drop(columns="base_chunks")
        numbers = [c for c in memory_table.columns if c.endswith(("_mb", "_x"))]
        memory_table[numbers] = memory_table[numbers].astype(float)
        print(memory_table.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.2f}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "scale", "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": config,
        "machine": machine(), "load_average_before_after": loads,
        "parent_maxrss_mb": floor,
        "rows": rows, "targets": timed, "memory": memory,
    }, indent=1, default=str) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", default="100000,1000000", help="comma-separated sizes (default 100000,1000000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--code", default=str(REPO), help="the ops_pipelines checkout to measure (default: this one)")
    parser.add_argument("--workdir", default=None, help="where the sizes' folders go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (kept anyway after a failure)")
    parser.add_argument("--keep-going", action="store_true",
                        help="after a failed step (past the full sync), record it and run the next ones")
    parser.add_argument("--baseline", default=None, help="an earlier run's JSON: its largest size is the 1.5x base")
    parser.add_argument("--out", default=str(REPO / "bench" / "scale.json"))
    parser.add_argument("--again", default=None,
                        help="re-measure these steps (comma-separated names of STEPS) in the folders a --keep run left")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(RESULT_PREFIX + json.dumps(CHILDREN[args.child](json.loads(args.params))), flush=True)
        return
    sizes = sorted({int(s) for s in args.chunks.split(",") if s.strip()})
    if not sizes or sizes[0] < PARAGRAPHS:
        parser.error(f"--chunks takes sizes of at least {PARAGRAPHS}")
    base_rows = []
    if args.baseline:
        old = json.loads(Path(args.baseline).read_text())["rows"]
        base_rows = [r for r in old if r["chunks"] == max(r["chunks"] for r in old)]

    again = None
    if args.again:
        named = {step.__name__: step for step in STEPS}
        unknown = [name for name in args.again.split(",") if name not in named]
        if unknown or not args.workdir:
            parser.error(f"--again takes step names of {', '.join(named)}, and the --workdir of a --keep run")
        again = [named[name] for name in args.again.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    code = Path(args.code).resolve()
    config = {"chunks": sizes, "seed": args.seed, "embedder": EMBEDDER, "code": str(code), "commit": git_commit(code),
              "workdir": str(work), "baseline": args.baseline, "again": args.again}
    print(f"measuring {code} ({config['commit']}) in {work}", flush=True)
    loads, rows, failures = [list(os.getloadavg())], [], []
    for chunks in sizes:
        size = Size(chunks, work / str(chunks), code, args.seed, kept=again is not None)
        try:
            if not bench_size(size, args.keep_going, again):
                failures.append(f"at {size.chunks} chunks, a step failed: see FAILED in the table")
        except StepFailed as exc:
            failures.append(str(exc))
        rows += size.rows
        if failures and not args.keep_going:
            break
        if not failures and not args.keep and not again:
            shutil.rmtree(size.root)
    loads.append(list(os.getloadavg()))
    if not base_rows and len(sizes) > 1:
        base_rows = [r for r in rows if r["chunks"] == min(r["chunks"] for r in rows)]
    report(rows, base_rows, Path(args.out), config, loads)
    if failures:
        sys.exit("\n" + "\n\n".join(failures) + f"\n\nwork folder kept: {work} ({du_mb(work):.0f} MB)")
    if not args.keep and not again:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
