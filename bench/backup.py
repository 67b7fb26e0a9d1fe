"""Benchmark of backup and restore of the whole knowledge base (plain Python, no Dagster): the
time to back up, and the recovery time (RTO) of a restore after the knowledge base is wiped.

Run:  .venv/bin/python bench/backup.py [--chunks 20000] [--kb sqlite,postgres] [--seed 7]
                                       [--json bench/results/backup.json]

For each metadata DB in ``--kb`` (``postgres`` needs PostgreSQL on 127.0.0.1:5432; a throwaway
database is created and dropped), in a fresh temp folder:

* ``setup`` (timed, not a scenario): the synthetic corpus of ``bench/sync.py`` grown to at least
  ``--chunks`` chunks, synced into one container with ``hash-384@1``, a feature-hashing embedder
  of MiniLM's 384 dimensions (the benchmark is about backup IO, not the model), into Qdrant local
  mode and a folder object store.
* ``backup``: ``write_backup`` (DB copy, every collection scrolled out, blobs, manifest, tar)
  and the upload of the tar to the object store under ``backups/``.
* then the knowledge base is wiped: every container deleted, every collection dropped.
* ``restore`` (the RTO): from the backup's key in the object store to a knowledge base that
  serves again: download, verify every checksum and extract (``read_archive``), then
  ``restore_backup`` (blobs, collections written, reconciliation checks, DB rows replaced in one
  transaction, aliases moved). Its steps are printed beside it. A search is run afterwards and
  the counts are compared with the setup's: a difference fails the benchmark.

Target: RTO under 10 s for 20,000 chunks (runbook 003 accepts 48 s).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))  # bench/sync.py and bench/export.py: corpus, sync

import pandas as pd
from export import write_corpus_for
from sync import SLUG, kb_url, machine, opened_kb, run_sync, vocabulary

from ops_pipelines.backup import backup_key, restore_backup, verify_backup, write_backup
from ops_pipelines.embedders import load_embedder
from ops_pipelines.ingest import serving_chunker
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.vectors import open_vector_store
from ops_pipelines.vectors.serving import serving_collection

EMBEDDER = "hash-384@1"
QUIET = logging.getLogger("bench")
QUIET.setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message="Local mode is not recommended", category=UserWarning)
MB = 1 << 20


def census(url: str, qdrant: Path) -> dict:
    with opened_kb(url) as kb, open_vector_store(path=str(qdrant)) as store:
        container = kb.get_container(SLUG)
        collection = serving_collection(kb, store, container)
        query = load_embedder(container.embedder_version).embed_queries(["section document"])[0]
        # An exact search: an HNSW index (rebuilt by the restore) is approximate. Scores, not ids:
        # points of equal score come back in either order.
        hits = store.search(collection, query, 3, exact=True)
        return {
            "documents": kb.count_documents(container.id)["active"],
            "chunks": kb.count_active_chunks(container.id, serving_chunker(kb, container)),
            "points": store.count(collection),
            "top": [round(h.score, 4) for h in hits],
        }


def bench(kind: str, target: int, seed: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        tmp = Path(tmp)
        docs, _ = write_corpus_for(tmp / "corpus", vocabulary(seed), seed, target)
        objects = FolderObjectStore(tmp / "objects")
        qdrant = tmp / "qdrant"
        with kb_url(kind, tmp) as url:
            print(f"[{kind}] setup: {docs} documents, full sync...", flush=True)
            started = time.perf_counter()
            with opened_kb(url) as kb:
                kb.add_container(SLUG, "folder", str(tmp / "corpus"), EMBEDDER)
            run_sync(url, qdrant, objects, docs, "setup")
            before = census(url, qdrant)
            print(f"[{kind}] setup: {before['chunks']} chunks in {time.perf_counter() - started:.1f}s", flush=True)

            started = time.perf_counter()
            with opened_kb(url) as kb, open_vector_store(path=str(qdrant)) as store:
                report = write_backup(kb, store, objects, tmp / "backup.tar", run_id="bench", log=QUIET)
            key = backup_key(datetime.now(UTC), "bench")
            objects.put_file(key, report.path)
            backup_s = time.perf_counter() - started
            (tmp / "backup.tar").unlink()

            with opened_kb(url) as kb, open_vector_store(path=str(qdrant)) as store:
                for container in kb.list_containers():
                    for generation in kb.generations(container.id):
                        store.drop_collection(generation.collection)
                    kb.delete_container(container.id)

            started = time.perf_counter()
            objects.get_file(key, tmp / "restore.tar")
            fetched = time.perf_counter()
            verified = verify_backup(tmp / "restore.tar", tmp / "extracted", objects)
            extracted = time.perf_counter()
            with opened_kb(url) as kb, open_vector_store(path=str(qdrant)) as store:
                restored = restore_backup(kb, store, objects, verified, log=QUIET)
            rto = time.perf_counter() - started
            after = census(url, qdrant)
            if after != before:
                raise RuntimeError(f"restore gave {after}, the knowledge base had {before}")
            steps = {"fetch_s": fetched - started, "verify_extract_s": extracted - fetched}
            steps |= {f"{k}_s": v for k, v in restored.seconds.items()}
            common = {"kb": kind, "chunks": before["chunks"], "archive_mb": round(report.size / MB, 2)}
            return [
                {**common, "scenario": "backup", "seconds": round(backup_s, 2)},
                {**common, "scenario": "restore (RTO)", "seconds": round(rto, 2), **{k: round(v, 2) for k, v in steps.items()}},
            ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=20000, help="container size in chunks (default 20000)")
    parser.add_argument("--kb", default="sqlite,postgres", help="metadata DBs, comma-separated (default both)")
    parser.add_argument("--seed", type=int, default=7, help="corpus seed (default 7)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "backup.json"),
                        help="where to write the results (default bench/results/backup.json)")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kb.split(",") if k.strip()]
    if not kinds or set(kinds) - {"sqlite", "postgres"}:
        parser.error("--kb takes sqlite and/or postgres")

    with tempfile.TemporaryDirectory(prefix="bench-embedders-") as registry:
        path = Path(registry) / "embedders.toml"
        path.write_text(f'[versions."{EMBEDDER}"]\nprovider = "hashing"\ndimension = 384\n')
        os.environ["OPS_EMBEDDERS_FILE"] = str(path)
        rows = [r for kind in kinds for r in bench(kind, args.chunks, args.seed)]

    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False, na_rep="-"))
    for r in rows:
        if r["scenario"] == "restore (RTO)":
            verdict = "meets" if r["seconds"] < 10 else "misses"
            print(f"RTO on {r['kb']}: {r['seconds']:.1f}s for {r['chunks']} chunks ({verdict} the 10 s target)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "machine": machine(), "load_avg": os.getloadavg()}, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
