"""A forced import killed with SIGKILL at its worst moments, as an operator's `kill -9` does: the
real `ops-pipelines import --force` in a process of its own, killed once the moment is seen (in
its log, or held there by ``kill_point``), then run again. The re-run finishes the import, no two
containers ever name one collection, what a killed run left is listed and can be removed, and
`health` passes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ops_pipelines.archives import write_archive
from ops_pipelines.chunking import PARAGRAPH_CHUNKER as PARA
from ops_pipelines.cli import main
from ops_pipelines.embedders import load_embedder
from ops_pipelines.ingest import chunk_documents, embed_chunks, sync_collection, sync_documents
from ops_pipelines.kb import KnowledgeBase, schema
from ops_pipelines.kb.generations import DROPPED
from ops_pipelines.objects import FolderObjectStore
from ops_pipelines.refresh import build_generation, swap_to
from ops_pipelines.search import search_container
from ops_pipelines.sources import open_source
from ops_pipelines.vectors import EdgeVectorStore

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = 320  # 8 chunks each: more points than one upsert batch (2,048) takes


def paragraph(d: int, p: int) -> str:
    return " ".join(f"word{d}x{p}x{w} topic{(d * 7 + p * 3 + w) % 97}" for w in range(40))


QUERY = paragraph(17, 3)  # the text of a chunk of doc017.md: its own best hit


@dataclass
class Home:
    """A DAGSTER_HOME with container docs (g1 retired, g2 live: its rollback target exists) and an
    export of it."""

    path: Path
    archive: Path
    tmp: Path

    @property
    def kb_url(self) -> str:
        return f"sqlite:///{self.path / 'kb.sqlite'}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}
        return env | {"DAGSTER_HOME": str(self.path), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}

    def start(self, *args: str, kill_at: tuple[str, int] | None = None) -> tuple[subprocess.Popen, Path, Path]:
        """``ops-pipelines ARGS`` in a process group of its own; with ``kill_at`` (attribute, n),
        held at the n-th call of that attribute. Returns the process, its log and the marker
        file ``kill_point`` writes when the moment has come."""
        marker = self.tmp / f"marker-{time.monotonic_ns()}"
        log = self.tmp / f"log-{time.monotonic_ns()}"
        if kill_at:
            command = [sys.executable, "-m", "ops_pipelines_tests.kill_point", kill_at[0], str(kill_at[1]), str(marker), "--", *args]
        else:
            command = [sys.executable, "-m", "ops_pipelines.cli", *args]
        with open(log, "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env(), cwd=REPO, start_new_session=True)
        return process, log, marker

    def run(self, *args: str) -> str:
        process, log, _ = self.start(*args)
        assert process.wait(300) == 0, log.read_text()[-3000:]
        return log.read_text()

    def cli(self, *args: str) -> tuple[int, str]:
        """A command that runs no job, in this process (its stores are closed when it returns)."""
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAGSTER_HOME", str(self.path))
            for name in [k for k in os.environ if k.startswith("OPS_")]:
                mp.delenv(name)
            result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    def read(self, body: Callable[[KnowledgeBase, EdgeVectorStore], object]):
        kb, store = KnowledgeBase(self.kb_url), EdgeVectorStore(self.path / "qdrant")
        try:
            return body(kb, store)
        finally:
            store.close()
            kb.close()


@pytest.fixture
def home(tmp_path) -> Home:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for d in range(DOCUMENTS):
        (corpus / f"doc{d:03}.md").write_text("\n\n".join(paragraph(d, p) for p in range(8)))
    home = Home(tmp_path / "home", tmp_path / "docs.tar", tmp_path)
    home.path.mkdir()

    def build(kb: KnowledgeBase, store: EdgeVectorStore) -> None:
        objects = FolderObjectStore(home.path / "objects")
        docs = kb.add_container("docs", "folder", str(corpus), "hash-256@1")
        sync_documents(kb, objects, docs, open_source("folder", str(corpus)))
        chunk_documents(kb, docs)
        embed_chunks(kb, docs, load_embedder, "hash-256@1")
        sync_collection(kb, store, docs)
        shadow = build_generation(kb, store, docs, "hash-256@1").generation
        swap_to(kb, store, docs, shadow)
        assert kb.count_active_chunks(docs.id, PARA) > 2048
        write_archive(kb, objects, kb.get_container("docs"), home.archive)

    home.read(build)
    return home


def kill_when(process: subprocess.Popen, log: Path, seen: Callable[[], bool], what: str, deadline: float = 240) -> None:
    """SIGKILL the process group as soon as ``seen()``; fail if the process ends first."""
    end = time.monotonic() + deadline
    while not seen():
        if process.poll() is not None:
            pytest.fail(f"the command ended ({process.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > end:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"not {what} within {deadline:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def sound(home: Home) -> None:
    """No collection is named by two containers' generation records; every collection in Qdrant is
    one a generation records and every recorded one exists; only docs is left, served, answering;
    `health` passes."""

    def facts(kb: KnowledgeBase, store: EdgeVectorStore):
        g, c = schema.generations.c, schema.containers.c
        with kb.engine.connect() as conn:
            rows = conn.execute(select(g.container_id, g.collection).where(g.state != DROPPED)).all()
            slugs = list(conn.execute(select(c.slug)).scalars())  # whatever state a container is in
        return rows, set(store.collection_names()), slugs, search_container(kb, store, "docs", QUERY, 1)

    rows, collections, slugs, hits = home.read(facts)
    owners: dict[str, set[str]] = {}
    for container_id, collection in rows:
        owners.setdefault(collection, set()).add(container_id)
    assert {name: ids for name, ids in owners.items() if len(ids) > 1} == {}
    assert collections == set(owners)
    assert slugs == ["docs"] and hits[0].payload["source_key"] == "doc017.md"
    code, out = home.cli("health")
    assert code == 0, out


def test_killed_right_after_the_archive_is_valid_the_re_run_finishes(home):
    process, log, _ = home.start("import", str(home.archive), "--force")
    kill_when(process, log, lambda: b"import: archive valid" in log.read_bytes(), "the archive was valid")
    home.run("import", str(home.archive), "--force")
    sound(home)


def test_killed_mid_upsert_the_old_container_still_serves_and_the_re_run_finishes(home):
    process, log, marker = home.start(
        "import", str(home.archive), "--force", kill_at=("ops_pipelines.vectors.edge:EdgeVectorStore.upsert", 2)
    )
    kill_when(process, log, marker.exists, "half the points were written")
    before = home.read(lambda kb, store: search_container(kb, store, "docs", QUERY, 1))
    assert before[0].payload["source_key"] == "doc017.md"  # the old generation still serves
    code, out = home.cli("container", "list")
    (leftover,) = [line for line in out.splitlines() if "importing" in line]
    assert "re-run the import" in leftover
    out = home.run("import", str(home.archive), "--force")
    assert "replaced" in out
    sound(home)


def test_killed_once_the_new_container_serves_the_parked_one_is_listed_and_removed(home):
    process, log, marker = home.start(
        "import", str(home.archive), "--force", kill_at=("ops_pipelines.archives.importer:drop_container", 1)
    )
    kill_when(process, log, marker.exists, "the old container was parked")
    code, out = home.cli("container", "list")
    (parked,) = [line.split()[0] for line in out.splitlines() if "parked" in line]
    assert parked.startswith("docs-replaced-")
    code, out = home.cli("container", "remove", parked)
    assert code == 0, out
    assert "removed container " + parked in out
    # The killed import still holds docs' lease: health names it, and what it says to run clears it.
    code, out = home.cli("health")
    assert code == 1 and "stopped while writing it" in out and "ops-pipelines sync docs" in out
    home.run("sync", "docs")
    sound(home)


def test_killed_while_removing_the_parked_container_the_re_run_finishes(home):
    process, log, marker = home.start(
        "import", str(home.archive), "--force", kill_at=("ops_pipelines.kb.store:KnowledgeBase.delete_container", 1)
    )
    kill_when(process, log, marker.exists, "the parked container's collections were dropped")
    home.run("import", str(home.archive), "--force")
    sound(home)
