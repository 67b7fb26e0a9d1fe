"""Benchmark of the incremental sync core (plain Python, no Dagster).

Run:  .venv/bin/python bench/sync.py [--docs 1000] [--embedders hash-256@1,minilm-l6-v2@1]
                                     [--seed 7] [--json bench/results/sync.json]

For each embedder, in a fresh temp folder (SQLite KB, Qdrant Edge, folder object store):

* ``bare baseline``: read every file, extract, chunk (``chunk_text``), embed every chunk, upsert
  to a fresh Qdrant collection with random ids. No DB, no cache, no blobs.
* ``full sync``, ``unchanged re-sync``, ``1% changed``, ``1% deleted``: the four sync steps
  (documents, chunks, embeddings, collection) one after the other on the same container, each
  step opening the KB (and Qdrant) and re-reading the container like the Dagster assets do.

``ratio_to_baseline`` is scenario seconds / baseline seconds; for ``full sync``, that ratio
minus 1 is the sync overhead over the bare pipeline (target: <= 10% with MiniLM). Model load
(and one warm-up call) is timed separately, before everything else. The embedder calls are the
same work in baseline and sync but the noisiest part on a shared CPU, so the overhead outside
them is printed too; run on an idle machine (the JSON records the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # ops_pipelines_tests: throwaway_database

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ops_pipelines.chunking import chunk_text  # noqa: E402
from ops_pipelines.embedders import get_version, load_embedder  # noqa: E402
from ops_pipelines.ingest import chunk_documents, embed_chunks, sync_collection, sync_documents  # noqa: E402
from ops_pipelines.kb import KnowledgeBase  # noqa: E402
from ops_pipelines.objects import FolderObjectStore  # noqa: E402
from ops_pipelines.sources import open_source  # noqa: E402
from ops_pipelines.sources.extract import EXTRACTORS  # noqa: E402
from ops_pipelines.vectors import open_vector_store  # noqa: E402

SLUG = "bench"
EMBED_BATCH = 256  # EmbeddingsConfig.batch_size default
STEPS = ("documents", "chunks", "embeddings", "collection")
COLUMNS = [
    "embedder", "scenario", "docs", "chunks_embedded", "upserted", "deleted", "seconds",
    "per_1000_docs_seconds", "ratio_to_baseline", *(f"{s}_s" for s in STEPS),
]


# ---- corpus ---------------------------------------------------------------------------------

# Common English words, most frequent first: real words tokenize like real text (about 0.25
# MiniLM word pieces per character), which matters for the embedder's speed.
WORDS = """
the of and to in is that for it as with was on be by this are from or at an which have not
they but one all their has were can more been other its new will also when there some into
these time only system data may about would any what first two most used each use other many
such over after our could before document through between where should well because three
service index search query user team change update model source file store cache vector point
collection container chunk version release backup restore policy access request response error
retry limit network server client process memory disk storage record field value table schema
report review owner action result rule check step state start stop build deploy test monitor
alert metric log trace event schedule job run task queue worker batch stream window range
public private local remote default custom current previous next final simple complex large
small fast slow high low early late open close read write load save send receive create delete
support manage handle return follow include provide require allow keep make take give find
show need know work call move turn place point hold bring begin seem help talk lead stand
""".split()


def vocabulary(seed: int) -> list[str]:
    """The word list, deduplicated, in a seeded frequency order."""
    words = list(dict.fromkeys(WORDS))
    head, tail = words[:40], words[40:]
    random.Random(f"vocab:{seed}").shuffle(tail)
    return head + tail


def document(words: list[str], seed: int, index: int, revision: int = 0) -> str:
    """A Markdown document of about 3 KB: a heading and 6-10 paragraphs; Zipf-like word use."""
    rng = random.Random(f"doc:{seed}:{index}:{revision}")
    weights = [1 / (rank + 10) for rank in range(len(words))]

    def sentence(n: int) -> str:
        text = " ".join(rng.choices(words, weights, k=n))
        return text[0].upper() + text[1:] + "."

    title = sentence(rng.randint(3, 7))[:-1]
    paragraphs = [
        " ".join(sentence(rng.randint(8, 20)) for _ in range(rng.randint(3, 7)))
        for _ in range(rng.randint(6, 10))
    ]
    return f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n"


def doc_path(root: Path, index: int) -> Path:
    return root / f"section-{index % 20:02d}" / f"doc-{index:05d}.md"


def write_corpus(root: Path, words: list[str], seed: int, docs: int) -> None:
    for i in range(docs):
        path = doc_path(root, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document(words, seed, i))


# ---- timing ---------------------------------------------------------------------------------

class Timer:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextmanager
    def step(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + time.perf_counter() - started

    @property
    def total(self) -> float:
        return sum(self.steps.values())


# ---- the bare pipeline ----------------------------------------------------------------------

def bare_baseline(corpus: Path, qdrant_dir: Path, embedder_version: str) -> dict:
    """Read, extract, chunk, embed, upsert: nothing remembered, nothing skipped."""
    version = get_version(embedder_version)
    embedder = load_embedder(embedder_version)
    timer = Timer()
    with timer.step("documents"):
        files = sorted(corpus.rglob("*.md"))
        records = []
        for path in files:
            key = path.relative_to(corpus).as_posix()
            extracted = EXTRACTORS[path.suffix.lower()](key)(path.read_bytes())
            records.append((key, path.as_uri(), extracted))
    with timer.step("chunks"):
        pieces = [
            {"source_key": key, "title": ex.title, "uri": uri, "ordinal": i, "text": text}
            for key, uri, ex in records
            for i, text in enumerate(chunk_text(ex.text))
        ]
    with timer.step("embeddings"):
        texts = [p["text"] for p in pieces]
        vectors = np.concatenate(
            [embedder.embed(texts[s : s + EMBED_BATCH]) for s in range(0, len(texts), EMBED_BATCH)]
        )
    with timer.step("collection"), open_vector_store(path=str(qdrant_dir)) as store:
        store.ensure_collection("bare", version.dimension)
        store.upsert("bare", [str(uuid.uuid4()) for _ in pieces], vectors, pieces)
    return row(embedder_version, "bare baseline", len(files), timer, len(pieces), len(pieces), 0)


# ---- the sync ------------------------------------------------------------------------------

@contextmanager
def kb_url(kind: str, tmp: Path):
    """A knowledge base URL of ``kind`` for one bench: a SQLite file in ``tmp`` (``sqlite``) or a
    throwaway PostgreSQL database on 127.0.0.1:5432 (``postgres``), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'kb.sqlite'}"
        return
    from ops_pipelines_tests.conftest import throwaway_database  # a test fixture: imported only for PostgreSQL

    with throwaway_database(f"bench_{Path(sys.argv[0]).stem}") as url:
        yield url


@contextmanager
def opened_kb(url: str):
    kb = KnowledgeBase(url)
    try:
        yield kb
    finally:
        kb.close()


def run_sync(kb_url: str, qdrant_dir: Path, objects: FolderObjectStore, docs: int, scenario: str) -> dict:
    """The four steps as the sync assets run them: each opens the KB and re-reads the container."""
    timer = Timer()
    with timer.step("documents"), opened_kb(kb_url) as kb:
        container = kb.get_container(SLUG)
        source = open_source(container.source_kind, container.source_location)
        sync_documents(kb, objects, container, source)
    with timer.step("chunks"), opened_kb(kb_url) as kb:
        chunk_documents(kb, kb.get_container(SLUG))
    with timer.step("embeddings"), opened_kb(kb_url) as kb:
        container = kb.get_container(SLUG)
        embedded = embed_chunks(kb, container, load_embedder, container.embedder_version, EMBED_BATCH)
    with timer.step("collection"), opened_kb(kb_url) as kb, open_vector_store(path=str(qdrant_dir)) as store:
        container = kb.get_container(SLUG)
        collection = sync_collection(kb, store, container)
        kb.mark_synced(container.id)
    if collection.points != embedded.active_chunks:
        raise RuntimeError(f"{scenario}: {collection.points} points for {embedded.active_chunks} active chunks")
    return row(container.embedder_version, scenario, docs, timer,
               embedded.computed, collection.upserted, collection.deleted)


def row(embedder: str, scenario: str, docs: int, timer: Timer, embedded: int, upserted: int, deleted: int) -> dict:
    return {
        "embedder": embedder,
        "scenario": scenario,
        "docs": docs,
        "chunks_embedded": embedded,
        "upserted": upserted,
        "deleted": deleted,
        "seconds": timer.total,
        "per_1000_docs_seconds": timer.total / docs * 1000 if docs else None,
        **{f"{s}_s": timer.steps.get(s, 0.0) for s in STEPS},
    }


def bench_embedder(embedder_version: str, docs: int, seed: int, words: list[str]) -> list[dict]:
    changed = max(1, docs // 100)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        write_corpus(corpus, words, seed, docs)
        baseline = bare_baseline(corpus, tmp / "qdrant-bare", embedder_version)

        kb_url = f"sqlite:///{tmp / 'kb.sqlite'}"
        qdrant_dir, objects = tmp / "qdrant", FolderObjectStore(tmp / "objects")
        with opened_kb(kb_url) as kb:
            kb.add_container(SLUG, "folder", str(corpus), embedder_version)

        rows = [baseline, run_sync(kb_url, qdrant_dir, objects, docs, "full sync")]
        rows.append(run_sync(kb_url, qdrant_dir, objects, docs, "unchanged re-sync"))
        if rows[-1]["chunks_embedded"] or rows[-1]["upserted"] or rows[-1]["deleted"]:
            raise RuntimeError(f"unchanged re-sync did work: {rows[-1]}")

        rng = random.Random(f"mutate:{seed}")
        picked = rng.sample(range(docs), 2 * changed)
        for i in picked[:changed]:
            doc_path(corpus, i).write_text(document(words, seed, i, revision=1))
        rows.append(run_sync(kb_url, qdrant_dir, objects, docs, "1% changed"))
        for i in picked[changed:]:
            doc_path(corpus, i).unlink()
        rows.append(run_sync(kb_url, qdrant_dir, objects, docs - changed, "1% deleted"))

    for r in rows:
        r["ratio_to_baseline"] = r["seconds"] / baseline["seconds"]
    return rows


def overhead(rows: pd.DataFrame) -> dict:
    """Full sync vs baseline, overall and outside the embedder calls (same work in both, and
    the noisiest part on a shared CPU)."""
    base = rows[rows.scenario == "bare baseline"].iloc[0]
    full = rows[rows.scenario == "full sync"].iloc[0]
    extra = (full.seconds - full.embeddings_s) - (base.seconds - base.embeddings_s)
    return {
        "full_sync_overhead": float(full.ratio_to_baseline - 1),
        "non_embedding_overhead_seconds": float(extra),
        "non_embedding_overhead_of_baseline": float(extra / base.seconds),
    }


def machine() -> dict:
    versions = {}
    for package in ("ops-pipelines", "qdrant-client", "sqlalchemy", "numpy", "torch", "sentence-transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "packages": versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="documents in the corpus (default 1000)")
    parser.add_argument("--embedders", default="hash-256@1,minilm-l6-v2@1", help="comma-separated versions")
    parser.add_argument("--seed", type=int, default=7, help="corpus seed (default 7)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "sync.json"),
                        help="where to write the results (default bench/results/sync.json)")
    args = parser.parse_args()
    if args.docs < 2:
        parser.error("--docs must be at least 2")
    embedders = [e.strip() for e in args.embedders.split(",") if e.strip()]
    for name in embedders:
        get_version(name)  # fail fast on a typo

    load_before = list(os.getloadavg())
    model_load = {}
    for name in embedders:  # loaded (and warmed up) once; load_embedder caches per process
        started = time.perf_counter()
        load_embedder(name).embed(["warm-up"])
        model_load[name] = time.perf_counter() - started
        print(f"loaded {name} in {model_load[name]:.2f}s", flush=True)

    words = vocabulary(args.seed)
    rows = []
    for name in embedders:
        print(f"benchmarking {name} on {args.docs} documents...", flush=True)
        rows += bench_embedder(name, args.docs, args.seed, words)

    table = pd.DataFrame(rows, columns=COLUMNS)
    print()
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    summary = {name: overhead(table[table.embedder == name]) for name in embedders}
    for name, o in summary.items():
        print(f"{name}: full sync overhead over bare baseline {o['full_sync_overhead']:+.1%}; "
              f"outside embedding {o['non_embedding_overhead_seconds']:+.3f}s "
              f"({o['non_embedding_overhead_of_baseline']:+.1%} of baseline)")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "sync",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {"docs": args.docs, "seed": args.seed, "embedders": embedders, "embed_batch": EMBED_BATCH},
        "machine": machine(),
        "load_average_before_after": [load_before, list(os.getloadavg())],
        "model_load_seconds": model_load,
        "summary": summary,
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
