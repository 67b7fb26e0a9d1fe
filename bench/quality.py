"""Benchmark of retrieval quality: recall@10, MRR@10, nDCG@10 and search latency of embedder
versions on this repository's docs and their golden set (``bench/docs-golden.jsonl``).

Run:  .venv/bin/python bench/quality.py [--versions hash-256@1,minilm-l6-v2@1,minilm-l6-v2@2,minilm-l6-v2-bm25@1]
                                        [--json bench/results/quality.json]

For each version, in a fresh temp folder: the docs are synced into a container (SQLite KB,
Qdrant Edge, folder object store) with the four sync steps, the golden set is registered (its
source keys checked against the container), and the live generation is evaluated as
``ops-pipelines eval`` and the swap gate's ``retrieval_quality`` check do (minilm-l6-v2-bm25@1 is
MiniLM with BM25 beside it, fused by reciprocal rank). Search latency is per query, the embedding
of the queries left out. The least score is calibrated as the gate does: the share of golden
queries answered above it and of made-up queries refused ("no match") are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pandas as pd  # noqa: E402
from sync import machine  # noqa: E402

from ops_pipelines.embedders import load_embedder  # noqa: E402
from ops_pipelines.ingest import chunk_documents, embed_chunks, sync_collection, sync_documents  # noqa: E402
from ops_pipelines.kb import KnowledgeBase  # noqa: E402
from ops_pipelines.objects import FolderObjectStore  # noqa: E402
from ops_pipelines.quality import evaluate_generation, register_golden_set  # noqa: E402
from ops_pipelines.quality.calibrate import calibrate, probe_scores  # noqa: E402
from ops_pipelines.sources import open_source  # noqa: E402
from ops_pipelines.vectors import open_vector_store  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "bench" / "docs-golden.jsonl"
COLUMNS = ["embedder", "chunks", "queries", "recall@10", "mrr@10", "ndcg@10", "search_ms_p50", "search_ms_p95",
           "min_score", "golden_answered", "probes_refused"]
VERSIONS = "hash-256@1,minilm-l6-v2@1,minilm-l6-v2@2,minilm-l6-v2-bm25@1"


def measure(version: str, folder: Path) -> dict:
    kb = KnowledgeBase(f"sqlite:///{folder / 'kb.sqlite'}")
    try:
        container = kb.add_container("docs", "folder", str(REPO / "docs"), version)
        sync_documents(kb, FolderObjectStore(folder / "objects"), container, open_source("folder", str(REPO / "docs")))
        chunk_documents(kb, container)
        chunks = embed_chunks(kb, container, load_embedder, version).active_chunks
        with open_vector_store(path=str(folder / "qdrant")) as store:
            sync_collection(kb, store, container)
            golden, _ = register_golden_set(kb, container, GOLDEN.read_text(), str(GOLDEN))
            live = kb.live_generation(container.id)
            evaluation = evaluate_generation(store, container, live, golden)
            least = calibrate(evaluation, probe_scores(store, live))
    finally:
        kb.close()
    return {"embedder": version, "chunks": chunks, "queries": len(golden.queries), **evaluation.metrics,
            "search_ms_p50": evaluation.search_ms_p50, "search_ms_p95": evaluation.search_ms_p95,
            "min_score": least.min_score, "golden_answered": least.golden_answered,
            "probes_refused": least.probes_refused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", default=VERSIONS, help=f"comma-separated embedder versions (default {VERSIONS})")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "quality.json"),
                        help="where to write the results (default bench/results/quality.json)")
    args = parser.parse_args()
    rows = []
    for version in args.versions.split(","):
        print(f"{version} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
            rows.append(measure(version, Path(tmp)))
    table = pd.DataFrame(rows, columns=COLUMNS)
    print()
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "measured_at": datetime.now(UTC).isoformat(), "load_average": os.getloadavg(), "machine": machine(),
        "golden_set": str(GOLDEN.relative_to(REPO)), "rows": table.to_dict("records"),
    }, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
