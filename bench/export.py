"""Benchmark of container archives: export (tar and zip), verify and import, and their memory
(plain Python, no Dagster).

Run:  .venv/bin/python bench/export.py [--chunks 20000,40000] [--seed 7] [--runs 3]
                                       [--json bench/results/export.json]

It imports the ``ops_pipelines`` of the checkout it is in (not whichever one the venv's editable
install points at, which may be another worktree).

For each size in ``--chunks``, in a fresh temp folder, on the synthetic corpus of
``bench/sync.py`` (about 5 chunks per 3 KB document; documents are added until the corpus
chunks into at least that many chunks):

* ``setup`` (timed, not a scenario): a SQLite KB, a folder object store and Qdrant local mode;
  register the container and run the four sync steps (as ``bench/sync.py`` does), so it has
  documents, chunks, cached embeddings and blobs. The embedder is ``hash-256@1``, a feature
  hashing embedder with no model: setup is fast and the 256-d vectors are the size they are.
  The benchmark is about archive IO, not the model.
* ``export tar`` and ``export zip``: ``write_archive(..., include_vectors=True,
  include_blobs=True)``: archive MB, seconds, MB/s of archive written, chunks/s.
* ``plain tar``: the exported tar's members extracted into a folder (untimed), then archived by
  the system ``tar cf`` (timed). This is the floor for the IO: plain tar does less than export
  (no DB reads, no JSON encoding, no staging of the JSONL and vectors, no sha256 of the members
  and of the archive). ``export tar / plain tar`` is the ratio of the two, for reference; the
  target is the export's own throughput: ``export tar`` at >= 100 MB/s (issue 14).
  Both run ``--runs`` times, alternately (so a busy spell of the machine hits both), and their
  rows are the run of median seconds (every run's seconds are in the JSON, ``runs_s``). Both
  are warm: the KB and blobs were just written by the setup, the members just extracted, on a
  machine with free RAM, so both read from the page cache; each run writes a new archive (the
  previous one is deleted before the clock starts).
* ``verify tar`` and ``verify zip``: ``read_archive(path)``, no extraction (every member hashed).
* ``import tar``: ``read_archive(path, dest)`` (verify + extract: ``extract_s``), then
  ``import_archive(..., slug="imported")`` into a fresh KB, a fresh object store and a fresh
  Qdrant local folder, nothing shared with the source (``import_s``). The vectors come from the
  archive, so no embedder runs. Qdrant local mode writes about 1 ms per point, which dominates
  the import time; it also keeps every point in memory, and the reconciliation checks scroll
  every point with its vector, so the import's RSS grows with the container, unlike export and
  verify which stream. The imported container's active chunks and points are counted against
  the archive's chunks, and a shortfall is printed as a WARNING (a guard on the benchmark itself;
  the import refuses to finish with counts that differ from the archive's).

Export and verify stream the bytes, but keep a little bookkeeping per archive member, and
every document brings one blob member: export the manifest's members list (and zipfile's
ZipInfo list for a zip), verify tarfile's TarInfo or zipfile's ZipInfo list, about 1-1.5 KB per
document. That is the residual growth between the two sizes. Export's own working set (a batch
of 1000 rows, blocks of 1 MB) is about 20 MB at any size.

Every scenario runs in a fresh child process (this script re-invoked with a hidden
``--scenario`` flag), which reports its RSS right after its imports (``baseline_rss_mb``) and
its peak RSS at the end: ``rss_growth_mb`` = peak - baseline is the work's own memory. The peak
is ``VmHWM`` from ``/proc/self/status``, the high-water mark of the child's own memory since
its exec. ``ru_maxrss`` (kept in the JSON) is useless here: Linux carries the pre-exec memory's
high-water mark into it, and subprocess execs the child from the parent's memory (vfork), so
every child's ``ru_maxrss`` reads the parent's peak. The ``plain tar`` row's peak RSS is the
``tar`` process's, measured by GNU ``/usr/bin/time`` when present. Peak RSS growth that is
about the same at both sizes means memory is flat in the container size.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))  # bench/sync.py: corpus, sync steps, machine info
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ops_pipelines

import pandas as pd  # noqa: E402
from sync import SLUG, doc_path, document, machine, opened_kb, run_sync, vocabulary  # noqa: E402

from ops_pipelines.archives import import_archive, read_archive, write_archive  # noqa: E402
from ops_pipelines.chunking import chunk_text  # noqa: E402
from ops_pipelines.embedders import get_version, load_embedder  # noqa: E402
from ops_pipelines.ingest import serving_chunker  # noqa: E402
from ops_pipelines.objects import FolderObjectStore  # noqa: E402
from ops_pipelines.sources.extract import EXTRACTORS  # noqa: E402
from ops_pipelines.vectors import open_vector_store  # noqa: E402

EMBEDDER = "hash-256@1"
IMPORT_SLUG = "imported"
RESULT_PREFIX = "BENCH-RESULT "
MB = 1 << 20
TARGET_MB_PER_S = 100  # export tar (issue 14)
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").is_file() else None  # for tar's peak RSS
COLUMNS = [
    "chunks", "scenario", "archive_mb", "seconds", "mb_per_s", "chunks_per_s",
    "baseline_rss_mb", "peak_rss_mb", "rss_growth_mb", "extract_s", "import_s",
]

QUIET = logging.getLogger("bench")
QUIET.setLevel(logging.WARNING)
# Qdrant local mode warns about collections over 20,000 points: known, and the point of the size.
warnings.filterwarnings("ignore", message="Local mode is not recommended", category=UserWarning)


# ---- memory -----------------------------------------------------------------------------------

def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_mb() -> float:
    """The current resident set size of this process."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """The peak RSS of this process's own memory since its exec (VmHWM). Not ``ru_maxrss``: on
    Linux, exec carries the old memory's high-water mark into ``ru_maxrss``, and subprocess
    (vfork) execs from the parent's memory, so a child's ``ru_maxrss`` starts at the parent's
    peak (about 175-250 MB here: the parent holds pandas, Qdrant and the setup's data)."""
    return _status_mb("VmHWM")


def ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---- the scenarios, each run in its own child process -----------------------------------------

def scenario_export(p: dict) -> dict:
    objects = FolderObjectStore(p["objects"])
    Path(p["out"]).unlink(missing_ok=True)  # a previous run's: replacing it would be timed
    with opened_kb(p["kb_url"]) as kb:
        container = kb.get_container(SLUG)
        started = time.perf_counter()
        report = write_archive(kb, objects, container, p["out"], fmt=p["fmt"], include_vectors=True,
                               include_blobs=True, run_id="bench", log=QUIET)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "archive_bytes": report.size, "counts": report.counts}


def scenario_verify(p: dict) -> dict:
    started = time.perf_counter()
    verified = read_archive(p["archive"])
    return {"seconds": time.perf_counter() - started, "counts": verified.manifest["counts"]}


def scenario_import(p: dict) -> dict:
    root = Path(p["root"])
    started = time.perf_counter()
    verified = read_archive(p["archive"], root / "extracted")
    extracted = time.perf_counter()
    with opened_kb(f"sqlite:///{root / 'kb.sqlite'}") as kb, open_vector_store(path=str(root / "qdrant")) as store:
        report = import_archive(kb, FolderObjectStore(root / "objects"), store, verified, load_embedder,
                                slug=IMPORT_SLUG, log=QUIET)
        imported = time.perf_counter()
        points = store.count(report.collection)
    failed = [c.name for c in report.checks if not c.passed]
    if failed or report.embedded:
        raise RuntimeError(f"import: {report.embedded} chunks embedded, failed checks {failed}")
    with opened_kb(f"sqlite:///{root / 'kb.sqlite'}") as kb:
        active = kb.count_active_chunks((c := kb.get_container(IMPORT_SLUG)).id, serving_chunker(kb, c))
    return {
        "seconds": imported - started,
        "extract_s": extracted - started,
        "import_s": imported - extracted,
        # report.chunks is the archive's count; active and points are what the import wrote
        "counts": {"documents": report.documents, "chunks": report.chunks, "blobs": report.blobs,
                   "active_chunks": active, "points": points},
    }


SCENARIOS = {"export": scenario_export, "verify": scenario_verify, "import": scenario_import}


def child(name: str, params: str) -> None:
    """The child side: baseline RSS after imports, the work, peak RSS; one JSON line out."""
    baseline = rss_mb()
    result = SCENARIOS[name](json.loads(params))
    result.update(baseline_rss_mb=baseline, peak_rss_mb=peak_rss_mb(), ru_maxrss_mb=ru_maxrss_mb())
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(name: str, **params) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--scenario", name, "--params", json.dumps(params)],
        capture_output=True, text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode or not lines:
        raise RuntimeError(f"scenario {name} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


# ---- plain tar --------------------------------------------------------------------------------

def extract_members(exported: Path, tmp: Path) -> tuple[Path, list[str]]:
    """The exported tar's member files, for plain tar, and the top-level names to archive."""
    members = tmp / "plain-members"
    members.mkdir()
    subprocess.run(["tar", "xf", str(exported), "-C", str(members)], check=True)
    names = [n for n in ("manifest.json", "documents.jsonl", "chunks.jsonl", "vectors.npy", "blobs")
             if (members / n).exists()]
    return members, names


def plain_tar(members: Path, names: list[str], tmp: Path) -> dict:
    """The members archived by the system tar (timed)."""
    out = tmp / "plain.tar"
    # tar's peak RSS through GNU time, a small process in between (see peak_rss_mb for why not
    # wait4 from here); its fork + exec adds about a millisecond to the time.
    measured = tmp / "tar-maxrss.txt"
    command = ["tar", "cf", str(out), "-C", str(members), *names]
    if GNU_TIME:
        command = [GNU_TIME, "-f", "%M", "-o", str(measured), *command]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    size = out.stat().st_size
    out.unlink()
    peak = int(measured.read_text().split()[-1]) / 1024 if GNU_TIME else None
    return {"seconds": seconds, "archive_bytes": size, "peak_rss_mb": peak}


def median_run(runs: list[dict]) -> dict:
    """The run of median seconds (the upper one of an even count), with every run's seconds."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[len(ordered) // 2], "runs_s": [r["seconds"] for r in runs]}


def export_and_plain_tar(target: int, chunks: int, export, exported: Path, tmp: Path, runs: int) -> tuple[dict, dict]:
    """``runs`` exports to tar (``export("tar")`` writes ``exported``) and plain tars of its
    members, alternately: the rows of their median runs."""
    exports, plains, members = [], [], None
    for n in range(1, runs + 1):
        print(f"[{target}] export tar, plain tar ({n}/{runs})...", flush=True)
        exports.append(export("tar"))
        if members is None:
            members, names = extract_members(exported, tmp)
        plains.append(plain_tar(members, names, tmp))
    shutil.rmtree(members)
    return row(chunks, "export tar", median_run(exports)), row(chunks, "plain tar", median_run(plains))


# ---- one size ---------------------------------------------------------------------------------

def write_corpus_for(root: Path, words: list[str], seed: int, chunks: int) -> tuple[int, int]:
    """Documents of bench/sync.py's corpus until they chunk into at least ``chunks`` chunks."""
    extract = EXTRACTORS[".md"]
    docs = total = 0
    while total < chunks:
        path = doc_path(root, docs)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = document(words, seed, docs)
        path.write_text(text)
        total += len(chunk_text(extract(path.relative_to(root).as_posix())(text.encode()).text))
        docs += 1
    return docs, total


def row(chunks: int, scenario: str, result: dict, archive_bytes: int | None = None) -> dict:
    size = result.get("archive_bytes", archive_bytes)
    seconds = result["seconds"]
    baseline = result.get("baseline_rss_mb")
    return {
        "chunks": chunks,
        "scenario": scenario,
        "archive_mb": size / MB if size else None,
        "seconds": seconds,
        "mb_per_s": size / MB / seconds if size else None,
        "chunks_per_s": chunks / seconds,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": result["peak_rss_mb"],
        "ru_maxrss_mb": result.get("ru_maxrss_mb"),
        "rss_growth_mb": result["peak_rss_mb"] - baseline if baseline is not None else None,
        "extract_s": result.get("extract_s"),
        "import_s": result.get("import_s"),
        "runs_s": result.get("runs_s"),
    }


def bench_size(target: int, seed: int, words: list[str], runs: int) -> tuple[list[dict], dict]:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        docs, counted = write_corpus_for(corpus, words, seed, target)
        print(f"[{target}] setup: {docs} documents ({counted} chunks), full sync...", flush=True)
        kb_url, objects_dir = f"sqlite:///{tmp / 'kb.sqlite'}", tmp / "objects"
        started = time.perf_counter()
        with opened_kb(kb_url) as kb:
            kb.add_container(SLUG, "folder", str(corpus), EMBEDDER)
        synced = run_sync(kb_url, tmp / "qdrant", FolderObjectStore(objects_dir), docs, "setup")
        with opened_kb(kb_url) as kb:
            chunks = kb.count_active_chunks((c := kb.get_container(SLUG)).id, serving_chunker(kb, c))
        setup = {"docs": docs, "chunks": chunks, "seconds": time.perf_counter() - started,
                 **{k: synced[k] for k in ("documents_s", "chunks_s", "embeddings_s", "collection_s")}}
        if chunks < target:
            raise RuntimeError(f"setup: {chunks} chunks, fewer than the {target} wanted")
        print(f"[{target}] setup: {chunks} chunks synced in {setup['seconds']:.1f}s", flush=True)

        archives = {fmt: tmp / f"export.{fmt}" for fmt in ("tar", "zip")}

        def export(fmt: str) -> dict:
            result = run_child("export", kb_url=kb_url, objects=str(objects_dir), out=str(archives[fmt]), fmt=fmt)
            if result["counts"]["chunks"] != chunks:
                raise RuntimeError(f"export {fmt}: {result['counts']} for {chunks} chunks")
            return result

        export_tar, plain = export_and_plain_tar(target, chunks, export, archives["tar"], tmp, runs)
        print(f"[{target}] export zip...", flush=True)
        rows = [export_tar, row(chunks, "export zip", export("zip")), plain]
        for fmt in ("tar", "zip"):
            print(f"[{target}] verify {fmt}...", flush=True)
            result = run_child("verify", archive=str(archives[fmt]))
            rows.append(row(chunks, f"verify {fmt}", result, archives[fmt].stat().st_size))
        print(f"[{target}] import tar...", flush=True)
        (tmp / "import").mkdir()
        result = run_child("import", archive=str(archives["tar"]), root=str(tmp / "import"))
        if result["counts"]["chunks"] != chunks:
            raise RuntimeError(f"import: {result['counts']} for {chunks} chunks")
        setup["import_counts"] = result["counts"]  # a shortfall is reported, not fatal: see main()
        rows.append(row(chunks, "import tar", result, archives["tar"].stat().st_size))
    return rows, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", default="20000,40000",
                        help="comma-separated container sizes in chunks, at least 2 (default 20000,40000)")
    parser.add_argument("--seed", type=int, default=7, help="corpus seed (default 7)")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs of export tar and of plain tar, alternately; the median is reported (default 3)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "export.json"),
                        help="where to write the results (default bench/results/export.json)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        child(args.scenario, args.params)
        return
    try:
        sizes = sorted({int(s) for s in args.chunks.split(",") if s.strip()})
    except ValueError:
        parser.error("--chunks takes comma-separated integers")
    if len(sizes) < 2 or sizes[0] < 1:
        parser.error("--chunks needs at least two distinct positive sizes")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    get_version(EMBEDDER)

    load_before = list(os.getloadavg())
    started = time.perf_counter()
    words = vocabulary(args.seed)
    rows, setups = [], {}
    for target in sizes:
        size_rows, setups[target] = bench_size(target, args.seed, words, args.runs)
        rows += size_rows
    total = time.perf_counter() - started

    table = pd.DataFrame(rows, columns=COLUMNS)
    print()
    with pd.option_context("display.width", 250):
        print(table.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.2f}"))
    summary: dict = {"export_tar_mb_per_s": {}, "export_tar_over_plain_tar": {}, "rss_growth_mb": {}}
    for target in sizes:
        chunks = setups[target]["chunks"]
        by = {r["scenario"]: r for r in rows if r["chunks"] == chunks}
        ratio = by["export tar"]["seconds"] / by["plain tar"]["seconds"]
        summary["export_tar_mb_per_s"][chunks] = by["export tar"]["mb_per_s"]
        summary["export_tar_over_plain_tar"][chunks] = ratio
        print(f"export tar at {chunks} chunks: {by['export tar']['mb_per_s']:.0f} MB/s (target >= {TARGET_MB_PER_S}), "
              f"{ratio:.1f}x plain tar")
    small, large = setups[sizes[0]]["chunks"], setups[sizes[-1]]["chunks"]
    for scenario in ("export tar", "export zip", "verify tar", "verify zip", "import tar"):
        growth = {r["chunks"]: r["rss_growth_mb"] for r in rows if r["scenario"] == scenario}
        summary["rss_growth_mb"][scenario] = growth
        print(f"peak RSS growth at {large} vs {small} chunks, {scenario}: "
              f"{growth[large]:.1f} MB vs {growth[small]:.1f} MB (flat if similar)")
    summary["import_shortfall"] = {}
    for target in sizes:
        counts, chunks = setups[target]["import_counts"], setups[target]["chunks"]
        summary["import_shortfall"][chunks] = chunks - counts["active_chunks"]
        if counts["active_chunks"] != chunks or counts["points"] != chunks:
            print(f"WARNING: import of {chunks} chunks wrote {counts['active_chunks']} active chunks and "
                  f"{counts['points']} points ({chunks - counts['active_chunks']} lost), yet its checks passed")
    print(f"total run time {total:.1f}s")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "export",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {"chunks": sizes, "seed": args.seed, "runs": args.runs, "embedder": EMBEDDER, "archive_options":
                   {"include_vectors": True, "include_blobs": True}, "import_format": "tar"},
        "machine": machine(),
        "load_average_before_after": [load_before, list(os.getloadavg())],
        "run_seconds": total,
        "setup": {str(k): v for k, v in setups.items()},
        "summary": summary,
        "rows": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows],
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
