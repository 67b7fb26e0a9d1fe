"""Benchmark of one scrape of ``ops-pipelines metrics serve`` on a large knowledge base.

Run:  .venv/bin/python bench/metrics.py [--chunks 100000] [--containers 10] [--kb sqlite,postgres]
                                        [--scrapes 20] [--json bench/results/metrics.json]

For each metadata DB in ``--kb`` (``postgres`` needs PostgreSQL on 127.0.0.1:5432; a throwaway
database is created and dropped), in a fresh temp folder:

* ``setup`` (timed, not a scenario): ``--containers`` containers sharing ``--chunks`` chunks
  (documents of five chunks of about 500 characters, a tenth of them archived), written straight
  into the tables; each with a live generation whose Qdrant Edge collection holds one point per
  active chunk (256-d random vectors); a backup key in the folder object store; a Dagster instance
  on the same backend (SQLite under DAGSTER_HOME, or PostgreSQL) with ``--runs`` runs, a tenth
  failed (created in its run storage, not executed: they have no events).
* ``first scrape``: the collector's first scrape, which opens the knowledge base (a schema check),
  runs the health probes and reads the failed steps of up to 25 failed runs (the others at the
  next scrapes; on SQLite, reading a run without events creates its empty event-log file).
* ``scrape``: the median and the slowest of ``--scrapes`` scrapes after it, as Prometheus makes
  them every 15 s (the health probes served from their cache), split by source from
  ``ops_metrics_source_read_seconds``.
* ``scrape with probes``: the median of scrapes that run the health probes each time (what one
  scrape in each OPS_METRICS_HEALTH_INTERVAL_S costs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))  # bench/sync.py: machine()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sync import kb_url, machine  # noqa: E402

from ops_pipelines.embedders import get_version  # noqa: E402
from ops_pipelines.kb import KnowledgeBase, schema  # noqa: E402
from ops_pipelines.kb.clock import utcnow  # noqa: E402
from ops_pipelines.kb.generations import LIVE  # noqa: E402
from ops_pipelines.vectors import EdgeVectorStore, generation_name  # noqa: E402

EMBEDDER = "hash-256@1"
CHUNKS_PER_DOC = 5
SOURCES = ("knowledge_base", "vector_store", "object_store", "dagster")


def build(url: str, tmp: Path, chunks: int, containers: int, rng: np.random.Generator) -> dict:
    """Containers, documents and chunks inserted directly, live collections with their points."""
    chunker = get_version(EMBEDDER).chunker
    dimension = get_version(EMBEDDER).dimension
    kb = KnowledgeBase(url)
    store = EdgeVectorStore(tmp / "qdrant")
    docs_per_container = max(chunks // containers // CHUNKS_PER_DOC, 1)
    text = ("lorem ipsum dolor sit amet " * 20)[:500]
    active = 0
    try:
        for n in range(containers):
            slug = f"bench-{n:02d}"
            container = kb.add_container(slug, "folder", str(tmp / "corpus" / slug), EMBEDDER)
            now = utcnow()
            documents, rows = [], []
            for d in range(docs_per_container):
                doc_id = str(uuid.uuid4())
                status = "archived" if d % 10 == 9 else "active"
                documents.append({
                    "id": doc_id, "container_id": container.id, "source_key": f"doc-{d:06d}.md",
                    "title": f"Document {d}", "uri": f"file:///corpus/{slug}/doc-{d:06d}.md", "raw_sha256": "0" * 64,
                    "source_hash": "0" * 64, "content_hash": f"{d:064d}", "text": text * CHUNKS_PER_DOC,
                    "status": status, "created_at": now, "updated_at": now,
                })
                rows += [{"document_id": doc_id, "chunker": chunker, "ordinal": i, "text": text,
                          "content_hash": f"{d:058d}{i:06d}"} for i in range(CHUNKS_PER_DOC)]
            with kb.engine.begin() as conn:
                for start in range(0, len(documents), 5000):
                    conn.execute(insert(schema.documents), documents[start : start + 5000])
                for start in range(0, len(rows), 20000):
                    conn.execute(insert(schema.chunks), rows[start : start + 20000])
            points = sum(CHUNKS_PER_DOC for d in documents if d["status"] == "active")
            active += points
            generation, _ = kb.open_generation(
                container.id, EMBEDDER, lambda g, slug=slug: generation_name(slug, EMBEDDER, g), state=LIVE
            )
            store.create_collection(generation.collection, dimension)
            for start in range(0, points, 4096):
                size = min(4096, points - start)
                vectors = rng.standard_normal((size, dimension)).astype("float32")
                store.upsert(generation.collection, [str(uuid.uuid4()) for _ in range(size)], vectors,
                             [{"ordinal": i} for i in range(size)])
            store.release(generation.collection)
            kb.mark_synced(container.id)
    finally:
        store.close()
        kb.close()
    objects = tmp / "objects" / "backups"
    objects.mkdir(parents=True)
    (objects / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}_bench.tar").write_bytes(b"x")
    return {"documents": docs_per_container * containers, "chunks": docs_per_container * containers * CHUNKS_PER_DOC,
            "active_chunks": active}


def add_runs(instance, runs: int) -> None:
    """``runs`` runs of two jobs, a tenth failed, through the run storage (no execution)."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    for n in range(runs):
        status = DagsterRunStatus.FAILURE if n % 10 == 0 else DagsterRunStatus.SUCCESS
        create_run_for_test(instance, job_name="sync_job" if n % 2 else "backup_job", status=status,
                                     tags={"ops/container": f"bench-{n % 10:02d}"})


def scrape(registry) -> tuple[float, dict[str, float], str]:
    started = time.perf_counter()
    text = generate_latest(registry).decode()
    seconds = time.perf_counter() - started
    sources = {}
    for family in text_string_to_metric_families(text):
        if family.name == "ops_metrics_source_read_seconds":
            sources = {s.labels["source"]: s.value for s in family.samples}
    return seconds, sources, text


def bench(kind: str, chunks: int, containers: int, scrapes: int, runs: int) -> list[dict]:
    from dagster import DagsterInstance

    from ops_pipelines.cli.metrics import build_collector

    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        tmp = Path(tmp)
        home = tmp / "dagster_home"
        home.mkdir()
        with kb_url(kind, tmp) as url, kb_url(kind, tmp / "dagster") as dagster_url:
            # The Dagster instance on the same backend: SQLite under DAGSTER_HOME, or PostgreSQL as
            # in production (deploy/dagster.postgres.yaml).
            storage = ("  sqlite:\n    base_dir:\n      env: DAGSTER_HOME\n" if kind == "sqlite"
                       else f"  postgres:\n    postgres_url: {dagster_url}\n")
            (home / "dagster.yaml").write_text(f"storage:\n{storage}telemetry:\n  enabled: false\n")
            os.environ.update({"DAGSTER_HOME": str(home), "OPS_KB_URL": url, "OPS_QDRANT_PATH": str(tmp / "qdrant"),
                               "OPS_OBJECTS_DIR": str(tmp / "objects")})
            print(f"[{kind}] setup: {chunks} chunks in {containers} containers...", flush=True)
            started = time.perf_counter()
            built = build(url, tmp, chunks, containers, np.random.default_rng(7))
            instance = DagsterInstance.from_config(str(home))
            add_runs(instance, runs)
            print(f"[{kind}] setup: {built} in {time.perf_counter() - started:.1f}s", flush=True)
            try:
                common = {"kb": kind, "containers": containers, **built, "runs": runs}
                rows = []
                collector = build_collector(instance)
                registry = CollectorRegistry(auto_describe=False)
                registry.register(collector)
                seconds, sources, text = scrape(registry)
                points = sum(s.value for f in text_string_to_metric_families(text) if f.name == "ops_container_points"
                             for s in f.samples)
                if points != built["active_chunks"]:
                    raise RuntimeError(f"the scrape counted {points} points, {built['active_chunks']} were written")
                rows.append({**common, "scenario": "first scrape", "seconds": seconds,
                             **{f"{s}_s": sources.get(s) for s in SOURCES}})
                timed = [scrape(registry) for _ in range(scrapes)]
                median = statistics.median(t[0] for t in timed)
                rows.append({**common, "scenario": f"scrape (median of {scrapes})", "seconds": median,
                             "max_s": max(t[0] for t in timed),
                             **{f"{s}_s": statistics.median(t[1].get(s, 0) for t in timed) for s in SOURCES}})
                collector.sources.probes.interval_s = 0  # every scrape runs the probes
                probed = [scrape(registry)[0] for _ in range(max(scrapes // 4, 3))]
                rows.append({**common, "scenario": "scrape with probes", "seconds": statistics.median(probed),
                             "max_s": max(probed)})
                collector.close()
                return rows
            finally:
                instance.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in all (default 100000)")
    parser.add_argument("--containers", type=int, default=10, help="containers sharing them (default 10)")
    parser.add_argument("--kb", default="sqlite,postgres", help="metadata DBs, comma-separated (default both)")
    parser.add_argument("--scrapes", type=int, default=20, help="scrapes timed after the first (default 20)")
    parser.add_argument("--runs", type=int, default=500, help="runs in the Dagster instance (default 500)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "metrics.json"),
                        help="where to write the results (default bench/results/metrics.json)")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kb.split(",") if k.strip()]
    if not kinds or set(kinds) - {"sqlite", "postgres"}:
        parser.error("--kb takes sqlite and/or postgres")
    rows = [row for kind in kinds for row in bench(kind, args.chunks, args.containers, args.scrapes, args.runs)]
    table = pd.DataFrame(rows)
    columns = ["kb", "containers", "chunks", "active_chunks", "runs", "scenario", "seconds", "max_s",
               *(f"{s}_s" for s in SOURCES)]
    print()
    print(table[[c for c in columns if c in table]].to_string(index=False, float_format=lambda x: f"{x:.3f}",
                                                               na_rep="-"))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": machine(), "load_average": os.getloadavg(),
                               "results": rows}, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
