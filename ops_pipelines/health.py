"""Health of what the pipelines depend on: the metadata DB, Qdrant, the object store and the
embedders, each probed for real (a query, a listing, a write and read back, an embedding) with its
latency, and whether each container is served as recorded (``serving_report``). The Dagster
instance is probed by the callers that have one (CLI, the health check).

A probe never raises: whatever goes wrong becomes a failed result whose detail says what to do.
Secrets stay out of the details (URLs are shown without their password).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from ops_pipelines import settings
from ops_pipelines.embedders import get_version, load_embedder
from ops_pipelines.freshness import sync_freshness
from ops_pipelines.kb import KnowledgeBase, schema
from ops_pipelines.kb.migrations import LATEST, current_version
from ops_pipelines.objects import ObjectStore
from ops_pipelines.serving_report import ServingBroken, serving_report
from ops_pipelines.vectors import VectorStoreBusy

COMPONENTS = ("metadata_db", "qdrant", "serving", "object_store", "embedders", "dagster_instance")


@dataclass(frozen=True)
class HealthResult:
    component: str
    ok: bool
    detail: str
    latency_ms: float


def probe(component: str, check: Callable[[], str]) -> HealthResult:
    """Run ``check`` (which returns a detail or raises) and time it."""
    started = time.perf_counter()
    try:
        detail, ok = check(), True
    except Exception as exc:  # noqa: BLE001 - a health probe reports every failure
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return HealthResult(component, ok, detail, round((time.perf_counter() - started) * 1000, 1))


def check_database(url: str) -> str:
    kb = KnowledgeBase(url)
    try:
        with kb.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            version = current_version(conn)
            containers = conn.execute(select(func.count()).select_from(schema.containers)).scalar_one()
    finally:
        kb.close()
    where = make_url(url).render_as_string(hide_password=True)
    return f"{where}: schema v{version}/{LATEST}, {containers} containers"


def check_vectors(store_factory: Callable[[], object]) -> str:
    """Qdrant answers."""
    with store_factory() as store:
        return f"{len(store.collection_names())} collections"


def check_serving(store_factory: Callable[[], object], kb_url: str) -> str:
    """Every container's alias on its recorded live generation, holding one point per active
    chunk, and no writer killed half way (``serving_report``); ``ServingBroken`` says what to run."""
    kb = KnowledgeBase(kb_url)
    try:
        with store_factory() as store:
            report = serving_report(kb, store)
    except VectorStoreBusy as exc:
        return f"busy, not checked: {exc}"
    finally:
        kb.close()
    if report.problems:
        raise ServingBroken(report.describe())
    return report.describe()


def check_objects(objects: ObjectStore) -> str:
    """A probe object written, read back and deleted."""
    key = f"health/probe-{uuid.uuid4().hex}"
    payload = uuid.uuid4().bytes
    objects.put_bytes(key, payload)
    try:
        if objects.get_bytes(key) != payload:
            raise RuntimeError(f"{objects.description} returned other bytes than were written")
    finally:
        objects.delete(key)
    return f"{objects.description}: write, read and delete ok"


def check_embedders(versions: list[str]) -> str:
    """Each version loads (offline) and embeds a sentence to a finite vector of its dimension."""
    for name in versions:
        vector = np.asarray(load_embedder(name).embed_queries(["health check"]))
        dimension = get_version(name).dimension
        if vector.shape != (1, dimension) or not np.isfinite(vector).all():
            raise RuntimeError(f"{name} returned {vector.shape}, expected (1, {dimension}) finite values")
    return ", ".join(versions) if versions else "no containers: nothing to load"


def check_dagster_instance(instance) -> str:
    """The instance's run storage answers; the daemon's heartbeats are reported, not required
    (schedules and sensors need it, runs launched from the CLI do not)."""
    runs = instance.get_runs_count()
    beats = instance.get_daemon_heartbeats()
    if not beats:
        daemon = "no daemon heartbeat (schedules and sensors are not running: start `make ui` (dg dev) or the daemon)"
    else:
        age = time.time() - max(b.timestamp for b in beats.values())
        daemon = f"daemon heartbeat {age:.0f}s ago"
    return f"{runs} runs recorded; {daemon}"


def container_embedders(kb_url: str) -> list[str]:
    kb = KnowledgeBase(kb_url)
    try:
        return sorted({c.embedder_version for c in kb.list_containers()})
    finally:
        kb.close()


def probe_freshness(kb_url: str) -> HealthResult:
    """Sync freshness as a health line: not ok (a warning) when a container is stale or never
    synced, or when the window or the metadata DB cannot be read (the detail says which)."""
    started = time.perf_counter()
    try:
        max_age = timedelta(hours=settings.sync_max_age_hours())
        kb = KnowledgeBase(kb_url)
        try:
            report = sync_freshness(kb.list_containers(), max_age)
        finally:
            kb.close()
        ok, detail = not report.stale, report.summary()
    except Exception as exc:  # noqa: BLE001 - reported like every probe
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return HealthResult("sync_freshness", ok, detail, round((time.perf_counter() - started) * 1000, 1))


def check_all(kb_url: str, open_vectors: Callable, open_objects: Callable[[], ObjectStore], instance) -> list[HealthResult]:
    """Every component, in the order of ``COMPONENTS``."""
    return [
        probe("metadata_db", lambda: check_database(kb_url)),
        probe("qdrant", lambda: check_vectors(open_vectors)),
        probe("serving", lambda: check_serving(open_vectors, kb_url)),
        probe("object_store", lambda: check_objects(open_objects())),
        probe("embedders", lambda: check_embedders(container_embedders(kb_url))),
        probe("dagster_instance", lambda: check_dagster_instance(instance)),
    ]
