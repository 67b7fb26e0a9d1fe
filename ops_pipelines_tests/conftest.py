"""Shared fixtures: throwaway SQLite and PostgreSQL knowledge bases, a corpus folder, a Dagster
harness that runs the sync assets for real against Qdrant local mode."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, instance_for_test, materialize

from ops_pipelines.defs.partitions import containers_partitions, embedder_versions_partitions, refresh_partition_key
from ops_pipelines.defs import export, refresh, sync
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
PG = dict(host="127.0.0.1", port=5432, user="postgres")


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    import psycopg2

    name = f"ops_test_{uuid.uuid4().hex[:12]}"
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

    @property
    def qdrant_path(self) -> str:
        return str(self.home / "qdrant")

    def resources(self) -> dict:
        return {
            "kb": KnowledgeBaseResource(url=self.kb_url),
            "vectors": VectorStoreResource(path=self.qdrant_path),
            "objects": ObjectStoreResource(root=str(self.home / "objects")),
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
        (mat,) = result.asset_materializations_for_node(asset)
        return {k: v.value for k, v in mat.metadata.items()}

    def counts(self, result) -> dict:
        md = self.metadata(result, "source_documents")
        return {k: md[k] for k in ("inserted", "updated", "skipped", "archived", "unarchived", "failed")}

    def vector_store(self):
        return open_vector_store(path=self.qdrant_path)

    def kb(self) -> KnowledgeBase:
        return KnowledgeBase(self.kb_url)

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
        return Definitions.merge(sync.defs, refresh.defs, export.defs, Definitions(resources=resources)).resolve_job_def(name)

    def serving(self, slug: str) -> str | None:
        """The collection the live alias of ``slug`` points at."""
        with self.vector_store() as store:
            return store.resolve_alias(f"kb_{slug}")


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
