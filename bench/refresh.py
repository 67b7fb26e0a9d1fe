"""Benchmark of the refresh core: shadow rebuilds, the swap gate, and search during swaps
(plain Python, no Dagster).

Run:  .venv/bin/python bench/refresh.py [--docs 1000] [--embedder minilm-l6-v2@1] [--swaps 20]
                                        [--seed 7] [--json bench/results/refresh.json]

In a fresh temp folder (SQLite KB, Qdrant Edge, folder object store), on the synthetic
corpus of ``bench/sync.py``:

* ``setup`` (timed, not a scenario): register the container and run the four sync steps, so it
  has a live generation g1 and the embedding cache holds every chunk's vector.
* ``shadow rebuild from cache``: ``embed_chunks`` (finds nothing to compute), then
  ``build_generation`` (mode shadow), ``reconcile_generation`` (every check must pass) and
  ``swap_to`` (retention 2). This is what a refresh costs when the version's vectors are cached:
  Qdrant writes and checks, no model time (and no index build below 20,000 points).
* ``shadow rebuild re-embedding``: the same with ``embed_chunks(recompute=True)``, every chunk
  re-embedded by the model (overwriting the cache), i.e. what a rebuild would cost without it.
  ``reembed_over_cache`` is its total over the from-cache total (target: >= 10x with MiniLM).
* ``search availability``: a background thread searches the live alias (limit 1, a fixed query
  vector from the embedder) without pause, while the main thread does a shadow rebuild from cache
  and its swap (its row is ``shadow rebuild from cache, searched``), then ``--swaps - 1``
  rollbacks that flip the alias between the last two generations. A search fails if it raises or
  returns no hit (target: 0 failed); ``max gap`` is the longest time between two successful
  searches, which includes the search itself and any GIL wait behind the main thread.

The sampler thread and the main thread share one store (Qdrant Edge opens each shard in one
process): each search reads the live generation from the metadata DB, which is the embedded
alias, so a swap is one DB transaction, not the network round trip of a Qdrant server. Model load (and one warm-up call) is timed
separately, before everything else, so no scenario pays it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))  # bench/sync.py: corpus, timer, sync steps, machine info

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sync import EMBED_BATCH, SLUG, Timer, machine, opened_kb, run_sync, vocabulary, write_corpus  # noqa: E402

from ops_pipelines.embedders import get_version, load_embedder  # noqa: E402
from ops_pipelines.ingest import embed_chunks  # noqa: E402
from ops_pipelines.kb import KnowledgeBase  # noqa: E402
from ops_pipelines.objects import FolderObjectStore  # noqa: E402
from ops_pipelines.refresh import SHADOW, build_generation, reconcile_generation, rollback, swap_to  # noqa: E402
from ops_pipelines.vectors import VectorStore, alias_name, open_vector_store  # noqa: E402
from ops_pipelines.vectors.serving import serving_collection  # noqa: E402

RETENTION = 2  # RefreshConfig.retention default
SWAP_PAUSE = 0.05  # seconds between two swaps, so the sampler searches each alias target a while
QUERY = "how do I restore the vector collection from the last backup"
STEPS = ("embed", "build", "checks", "swap")
COLUMNS = [
    "scenario", "docs", "active_chunks", "chunks_embedded", "generation", "upserted", "points",
    "checks_passed", *(f"{s}_s" for s in STEPS), "seconds",
]

QUIET = logging.getLogger("bench")
QUIET.setLevel(logging.WARNING)


def setup(tmp: Path, embedder_version: str, docs: int, seed: int) -> tuple[str, Path, dict]:
    """Corpus (untimed), then container registration and a full sync (timed)."""
    corpus = tmp / "corpus"
    write_corpus(corpus, vocabulary(seed), seed, docs)
    kb_url, qdrant_dir = f"sqlite:///{tmp / 'kb.sqlite'}", tmp / "qdrant"
    started = time.perf_counter()
    with opened_kb(kb_url) as kb:
        kb.add_container(SLUG, "folder", str(corpus), embedder_version)
    registered = time.perf_counter() - started
    synced = run_sync(kb_url, qdrant_dir, FolderObjectStore(tmp / "objects"), docs, "setup")
    return kb_url, qdrant_dir, {**synced, "register_s": registered}


def shadow_refresh(kb: KnowledgeBase, store: VectorStore, scenario: str, docs: int, recompute: bool) -> dict:
    """Embed (what the cache lacks, or everything), build a shadow generation, gate it, swap."""
    timer = Timer()
    container = kb.get_container(SLUG)  # re-read: an earlier swap changed its live generation
    version = container.embedder_version
    with timer.step("embed"):
        embedded = embed_chunks(kb, container, load_embedder, version, EMBED_BATCH, recompute=recompute, log=QUIET)
    if bool(embedded.computed) != recompute:
        raise RuntimeError(f"{scenario}: {embedded.computed} chunks embedded with recompute={recompute}")
    with timer.step("build"):
        built = build_generation(kb, store, container, version, mode=SHADOW, log=QUIET)
    with timer.step("checks"):
        checks = reconcile_generation(kb, store, container, built.generation)
    failed = [f"{c.name}: {c.summary}" for c in checks if not c.passed]
    if failed:
        raise RuntimeError(f"{scenario}: generation {built.generation.number} failed checks: {failed}")
    with timer.step("swap"):
        swap_to(kb, store, container, built.generation, retention=RETENTION, log=QUIET)
    return {
        "scenario": scenario,
        "docs": docs,
        "active_chunks": embedded.active_chunks,
        "chunks_embedded": embedded.computed,
        "generation": built.generation.number,
        "upserted": built.upserted,
        "points": built.points,
        "checks_passed": len(checks),
        **{f"{s}_s": timer.steps[s] for s in STEPS},
        "seconds": timer.total,
    }


@dataclass
class Sampler:
    """Searches the container's live alias back to back in a thread until stopped, resolving it
    each time as a searcher would (embedded, the alias is the live generation the metadata DB
    records)."""

    kb: KnowledgeBase
    store: VectorStore
    slug: str
    vector: np.ndarray
    sampled: int = 0
    failed: int = 0
    max_gap: float = 0.0
    errors: Counter = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="search-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last_ok = None
        while not self._stop.is_set():
            try:
                collection = serving_collection(self.kb, self.store, self.kb.get_container(self.slug))
                ok = bool(self.store.search(collection, self.vector, limit=1))
                if not ok:
                    self.errors["no hit"] += 1
            except Exception as exc:  # any failure of a search is what we count
                ok = False
                self.errors[f"{type(exc).__name__}: {exc}"] += 1
            now = time.perf_counter()
            self.sampled += 1
            if ok:
                if last_ok is not None:
                    self.max_gap = max(self.max_gap, now - last_ok)
                last_ok = now
            else:
                self.failed += 1


def availability(kb: KnowledgeBase, store: VectorStore, embedder_version: str, docs: int, swaps: int) -> tuple[dict, dict]:
    """Search the live alias continuously during a rebuild + swap and ``swaps - 1`` rollbacks."""
    vector = load_embedder(embedder_version).embed_queries([QUERY])[0]
    rollbacks = []
    started = time.perf_counter()
    with Sampler(kb, store, SLUG, vector) as sampler:
        refreshed = shadow_refresh(kb, store, "shadow rebuild from cache, searched", docs, recompute=False)
        for _ in range(swaps - 1):
            time.sleep(SWAP_PAUSE)
            begun = time.perf_counter()
            rollback(kb, store, kb.get_container(SLUG), log=QUIET)
            rollbacks.append(time.perf_counter() - begun)
        time.sleep(SWAP_PAUSE)
    seconds = time.perf_counter() - started
    live = kb.live_generation(kb.get_container(SLUG).id)
    if serving_collection(kb, store, kb.get_container(SLUG)) != live.collection:
        raise RuntimeError(f"alias {alias_name(SLUG)} does not serve the live generation {live.collection}")
    return refreshed, {
        "searches_sampled": sampler.sampled,
        "failed_searches": sampler.failed,
        "max_gap_ms": sampler.max_gap * 1000,
        "searches_per_second": sampler.sampled / seconds,
        "swaps": swaps,
        "rollback_ms_mean": float(np.mean(rollbacks)) * 1000 if rollbacks else None,
        "seconds": seconds,
        "errors": dict(sampler.errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="documents in the corpus (default 1000)")
    parser.add_argument("--embedder", default="minilm-l6-v2@1", help="embedder version (default minilm-l6-v2@1)")
    parser.add_argument("--swaps", type=int, default=20, help="alias moves while searching: 1 swap, then rollbacks (default 20)")
    parser.add_argument("--seed", type=int, default=7, help="corpus seed (default 7)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "refresh.json"),
                        help="where to write the results (default bench/results/refresh.json)")
    args = parser.parse_args()
    if args.docs < 1:
        parser.error("--docs must be at least 1")
    if args.swaps < 1:
        parser.error("--swaps must be at least 1")
    get_version(args.embedder)  # fail fast on a typo

    load_before = list(os.getloadavg())
    started = time.perf_counter()
    load_embedder(args.embedder).embed(["warm-up"])  # load_embedder caches the model per process
    model_load = time.perf_counter() - started
    print(f"loaded {args.embedder} in {model_load:.2f}s", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-refresh-") as tmp:
        print(f"setup: {args.docs} documents, full sync...", flush=True)
        kb_url, qdrant_dir, synced = setup(Path(tmp), args.embedder, args.docs, args.seed)
        print(f"setup: registered in {synced['register_s']:.3f}s, full sync in {synced['seconds']:.3f}s "
              f"({synced['chunks_embedded']} chunks embedded in {synced['embeddings_s']:.3f}s, "
              f"{synced['upserted']} points)", flush=True)
        with opened_kb(kb_url) as kb, open_vector_store(path=str(qdrant_dir)) as store:
            rows = []
            for scenario, recompute in (("shadow rebuild from cache", False), ("shadow rebuild re-embedding", True)):
                print(f"{scenario}...", flush=True)
                rows.append(shadow_refresh(kb, store, scenario, args.docs, recompute))
            print(f"search availability over {args.swaps} swaps...", flush=True)
            searched, avail = availability(kb, store, args.embedder, args.docs, args.swaps)
            rows.append(searched)

    table = pd.DataFrame(rows, columns=COLUMNS)
    ratio = rows[1]["seconds"] / rows[0]["seconds"]
    print()
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"re-embedding / from cache: {ratio:.1f}x (target >= 10x)")
    print(f"search availability: {avail['searches_sampled']} searches sampled "
          f"({avail['searches_per_second']:.0f}/s), {avail['failed_searches']} failed (target 0), "
          f"max gap {avail['max_gap_ms']:.1f} ms, {avail['swaps']} swaps "
          f"(mean rollback {avail['rollback_ms_mean'] or 0:.1f} ms)")
    for error, count in avail["errors"].items():
        print(f"  {count} x {error}")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "refresh",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {"docs": args.docs, "seed": args.seed, "embedder": args.embedder, "swaps": args.swaps,
                   "embed_batch": EMBED_BATCH, "retention": RETENTION, "swap_pause_seconds": SWAP_PAUSE},
        "machine": machine(),
        "load_average_before_after": [load_before, list(os.getloadavg())],
        "model_load_seconds": model_load,
        "setup": synced,
        "rows": rows,
        "summary": {"reembed_over_cache": ratio, "availability": avail},
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
