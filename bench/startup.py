"""Benchmark of the operator commands' wall time, start-up included.

Run:  .venv/bin/python bench/startup.py [--runs 5] [--repo PATH] [--json bench/results/startup.json]

In a temporary ``DAGSTER_HOME`` (the repo's ``dagster.yaml``, SQLite KB, Qdrant and object store
under it, as ``make demo`` sets it up), registers a container of the repo's ``docs/`` with the
hashing embedder (``hash-256@1``) and syncs it once. Then each command runs ``--runs`` times, each
time in a fresh process (``python -m ops_pipelines.cli ...``), after one untimed warm-up run:

* ``--help``
* ``search bench "how do I roll back after a bad re-embed?"``
* ``container list``, ``source status``, ``backup list`` (no backups: the listing path all the same)
* ``sync bench``: unchanged, so the run does no embedding and no upsert (checked)

``median_s`` is the median wall time, ``median_cpu_s`` the median CPU time (user + system) of the
process, which other work on a shared machine disturbs less; ``heavy_imports`` lists which of
dagster, torch, sentence_transformers, pandas and qdrant_client the command imported (one more
run, with ``python -X importtime``). ``--repo`` measures another checkout of ops-pipelines (e.g. the branch
point, exported with ``git archive``) with the same interpreter; its code is put first on
``PYTHONPATH``. The machine is shared: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SLUG = "bench"
QUERY = "how do I roll back after a bad re-embed?"
HEAVY = ("dagster", "torch", "sentence_transformers", "pandas", "qdrant_client")
# name, arguments after the interpreter, the target wall time (issue 14 item 7), a check of the output
SCENARIOS = [
    ("--help", ["-m", "ops_pipelines.cli", "--help"], None, "Usage:"),
    ("search", ["-m", "ops_pipelines.cli", "search", SLUG, QUERY], 1.5, "1. "),
    ("container list", ["-m", "ops_pipelines.cli", "container", "list"], None, f"{SLUG} "),
    ("source status", ["-m", "ops_pipelines.cli", "source", "status"], None, "breaker="),
    ("backup list", ["-m", "ops_pipelines.cli", "backup", "list"], None, "no backups"),
    ("sync (unchanged)", ["-m", "ops_pipelines.cli", "sync", SLUG], 3.0, "0 computed"),
]


def environment(repo: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}
    env |= {"DAGSTER_HOME": str(home), "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return env


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], repo: Path, env: dict[str, str], expect: str = "") -> tuple[float, float, str, str]:
    """Wall and CPU seconds of one run in a fresh process, its stdout and stderr."""
    cpu, started = children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    if done.returncode != 0 or expect not in done.stdout:
        raise RuntimeError(f"{' '.join(args)} (rc {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, cpu, done.stdout, done.stderr


def heavy_imports(args: list[str], repo: Path, env: dict[str, str]) -> str:
    *_, stderr = run(["-X", "importtime", *args], repo, env)
    names = {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    return ",".join(m for m in HEAVY if m in names) or "-"


def bench(repo: Path, runs: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        shutil.copy(repo / "dagster.yaml", home / "dagster.yaml")
        env = environment(repo, home)
        cli = ["-m", "ops_pipelines.cli"]
        run([*cli, "container", "add", "--slug", SLUG, "--source", f"folder:{repo / 'docs'}", "--embedder", "hash-256@1"],
            repo, env)
        run([*cli, "sync", SLUG], repo, env, "inserted")
        rows = []
        for name, args, target, expect in SCENARIOS:
            print(f"  {name} ...", flush=True)
            _, _, out, _ = run(args, repo, env, expect)  # warm-up: bytecode compiled, files cached
            if name.startswith("sync") and ("inserted 0, updated 0" not in out or " 0 upserted" not in out):
                raise RuntimeError(f"the unchanged sync did work:\n{out}")
            timed = [run(args, repo, env, expect)[:2] for _ in range(runs)]
            seconds, cpu = [t[0] for t in timed], [t[1] for t in timed]
            rows.append({
                "command": name,
                "runs": runs,
                "median_s": statistics.median(seconds),
                "min_s": min(seconds),
                "max_s": max(seconds),
                "median_cpu_s": statistics.median(cpu),
                "target_s": target,
                "heavy_imports": heavy_imports(args, repo, env),
                "seconds": seconds,
                "cpu_seconds": cpu,
            })
    return rows


def machine() -> dict:
    versions = {}
    for package in ("dagster", "qdrant-client", "pandas", "torch", "sentence-transformers", "click"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
    }


def git_commit(repo: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (default 5)")
    parser.add_argument("--repo", default=str(REPO), help="the ops-pipelines checkout to measure (default: this one)")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "startup.json"),
                        help="where to write the results (default bench/results/startup.json)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    repo = Path(args.repo).resolve()
    if not (repo / "ops_pipelines").is_dir():
        parser.error(f"{repo} is not an ops-pipelines checkout (no ops_pipelines/)")

    load_before = list(os.getloadavg())
    print(f"measuring {repo} ({args.runs} runs per command)...", flush=True)
    rows = bench(repo, args.runs)
    columns = ["command", "runs", "median_s", "min_s", "max_s", "median_cpu_s", "target_s", "heavy_imports"]
    print()
    print(pd.DataFrame(rows, columns=columns).to_string(index=False, float_format=lambda x: f"{x:.2f}", na_rep="-"))

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "startup",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {"runs": args.runs, "repo": str(repo), "commit": git_commit(repo), "embedder": "hash-256@1"},
        "machine": machine(),
        "load_average_before_after": [load_before, list(os.getloadavg())],
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
