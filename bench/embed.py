"""Benchmark of embedding throughput: all-MiniLM-L6-v2 in-process vs served over HTTP.

Run:  .venv/bin/python bench/embed.py [--chunks 512] [--batch-size 32] [--in-flight 1,2,4]
                                      [--json bench/results/embed.json]

The chunks are the project's own docs and README cut by the default version's chunker
(minilm-tokens-254@1), repeated to ``--chunks``. ``in-process`` is the sentence-transformers
model in this process (minilm-l6-v2@2). ``served`` is the same model behind the real infinity-emb
(``.venv-infinity``, which ``make test`` builds) over its OpenAI-compatible API, through the
``openai`` provider with ``batch_size`` texts per request and 1, 2 and 4 requests in flight. Model
load and one warm-up call are left out of every row. Both share the machine's CPU cores: on one
machine, requests in flight compete with the server's own threads, where a GPU fleet would serve
them in parallel.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sync import machine  # noqa: E402

from ops_pipelines.embedders import DEFAULT_VERSION, chunker_of, load_embedder  # noqa: E402
from ops_pipelines_tests.embedding_servers import SERVED_MODEL, start_infinity  # noqa: E402

COLUMNS = ["embedder", "in_flight", "batch_size", "chunks", "seconds", "chunks_per_s", "min_cosine_to_in_process"]


def corpus(count: int) -> list[str]:
    chunker = chunker_of(DEFAULT_VERSION)
    texts = [chunk for path in [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
             for chunk in chunker.cut(path.read_text())]
    return (texts * (count // len(texts) + 1))[:count]


def timed(embed, texts: list[str]) -> tuple[float, np.ndarray]:
    embed(texts[:8])  # warm-up: the first call pays for lazy set-up
    started = time.perf_counter()
    vectors = embed(texts)
    return time.perf_counter() - started, vectors


def served_registry(folder: Path, url: str, batch_size: int, in_flight: list[int]) -> Path:
    path = folder / "embedders.toml"
    path.write_text("".join(
        f'[versions."minilm-served-{n}@1"]\nprovider = "openai"\nbase_url = "{url}"\nmodel = "{SERVED_MODEL}"\n'
        f'dimension = 384\nwindow = 256\nchunker = "minilm-tokens-254@1"\nbatch_size = {batch_size}\nin_flight = {n}\n\n'
        for n in in_flight
    ))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=512, help="chunks embedded per row (default 512)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per request to the server (default 32)")
    parser.add_argument("--in-flight", default="1,2,4", help="requests in flight to try (default 1,2,4)")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "embed.json"),
                        help="where to write the results (default bench/results/embed.json)")
    args = parser.parse_args()
    in_flight = [int(n) for n in args.in_flight.split(",")]
    texts = corpus(args.chunks)
    rows = []

    print(f"in-process {DEFAULT_VERSION}: {len(texts)} chunks ...", flush=True)
    seconds, local = timed(load_embedder(DEFAULT_VERSION).embed, texts)
    rows.append(dict(embedder=f"in-process {DEFAULT_VERSION}", in_flight=None, batch_size=32, chunks=len(texts),
                     seconds=seconds, chunks_per_s=len(texts) / seconds, min_cosine_to_in_process=1.0))

    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        print("starting infinity-emb ...", flush=True)
        server = start_infinity(port, Path(tmp) / "infinity.log")
        try:
            os.environ["OPS_EMBEDDERS_FILE"] = str(served_registry(Path(tmp), server.url, args.batch_size, in_flight))
            os.environ["OPS_SOURCE_ALLOWED_HOSTS"] = "127.0.0.1"
            for n in in_flight:
                print(f"served, {n} in flight ...", flush=True)
                seconds, vectors = timed(load_embedder(f"minilm-served-{n}@1").embed, texts)
                rows.append(dict(embedder="served (infinity-emb, openai API)", in_flight=n, batch_size=args.batch_size,
                                 chunks=len(texts), seconds=seconds, chunks_per_s=len(texts) / seconds,
                                 min_cosine_to_in_process=float((vectors * local).sum(axis=1).min())))
        finally:
            server.stop()

    table = pd.DataFrame(rows, columns=COLUMNS).astype({"in_flight": "Int64"})
    print()
    print(table.astype({"in_flight": object}).fillna("-").to_string(index=False, formatters={
        "seconds": "{:.1f}".format, "chunks_per_s": "{:.1f}".format, "min_cosine_to_in_process": "{:.5f}".format,
    }))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "measured_at": datetime.now(UTC).isoformat(), "load_average": os.getloadavg(), "machine": machine(),
        "rows": table.to_dict("records"),
    }, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
