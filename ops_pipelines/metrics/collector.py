"""The Prometheus collector of ``ops-pipelines metrics serve``: everything is read when Prometheus
scrapes, nothing is written (but the object-store health probe's own object, at most once per
probe interval), and a source that cannot be read leaves its metrics out and says so in
``ops_metrics_source_up{source}`` rather than failing the scrape. The metric names, types and
labels are listed in docs/metrics.md.

Labels carry container slugs, Dagster job (``dagster_job``: Prometheus keeps ``job`` for its scrape
job) and step names, embedder versions and collection names, never a
document's text or title, a source location, a URL or a secret; errors go to the log by type and
redacted message, never into a metric.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from ops_pipelines.kb.clock import utcnow
from ops_pipelines.metrics.knowledge_base import (
    KnowledgeBaseMetrics,
    last_backup_at,
    read_containers,
    read_vectors,
)
from ops_pipelines.metrics.probes import CachedProbes
from ops_pipelines.metrics.runs import RunStats

_log = logging.getLogger(__name__)
SOURCES = ("knowledge_base", "vector_store", "object_store", "dagster")


@dataclass
class MetricsSources:
    """Where the collector reads from; ``from_settings`` builds it from the environment."""

    open_kb: Callable[[], object]  # a KnowledgeBase, opened once and kept (opening one migrates it)
    open_vectors: Callable[[], AbstractContextManager]  # a VectorStore for one scrape
    open_objects: Callable[[], object]  # an ObjectStore
    chunker_of: Callable[[str], str]  # embedder version -> its chunker's name
    breaker: Callable[[object, datetime], str]  # SourceState, now -> closed/open/half-open
    sync_max_age_s: float
    backup_rpo_s: float | None = None  # None: unknown (no backup schedule to derive it from)
    run_stats: Callable[[], RunStats] | None = None
    probes: CachedProbes | None = None
    now: Callable[[], datetime] = utcnow


def from_settings(
    run_stats: Callable[[], RunStats] | None = None,
    backup_rpo_s: float | None = None,
) -> MetricsSources:
    """The knowledge base, vectors and objects ``OPS_*`` name, as every other process reads them.
    The embedded engine's shards are opened without waiting (``VectorStoreBusy`` at once)."""
    from ops_pipelines import settings
    from ops_pipelines.embedders import get_version
    from ops_pipelines.ingest import BreakerPolicy, breaker_status
    from ops_pipelines.kb import KnowledgeBase
    from ops_pipelines.objects import open_object_store
    from ops_pipelines.vectors import open_vector_store

    policy = BreakerPolicy.from_env()
    url = settings.qdrant_url()
    return MetricsSources(
        open_kb=lambda: KnowledgeBase(settings.kb_url()),
        open_vectors=lambda: open_vector_store(
            url=url, api_key=settings.qdrant_api_key(), path=None if url else settings.qdrant_path(), wait_seconds=0
        ),
        open_objects=open_object_store,
        chunker_of=lambda version: get_version(version).chunker,
        breaker=lambda state, now: breaker_status(state, policy, now),
        sync_max_age_s=settings.sync_max_age_hours() * 3600,
        backup_rpo_s=backup_rpo_s,
        run_stats=run_stats,
    )


class OpsCollector:
    """``prometheus_client`` custom collector (``registry.register(OpsCollector(sources))``)."""

    def __init__(self, sources: MetricsSources):
        self.sources = sources
        self._kb = None
        self._kb_lock = threading.Lock()
        self._scrape_lock = threading.Lock()  # one scrape at a time: two Prometheus servers do not double the load

    def describe(self) -> list[Metric]:
        return []  # nothing is read when the collector is registered

    def close(self) -> None:
        if self._kb is not None:
            self._kb.close()
            self._kb = None

    def _knowledge_base(self):
        with self._kb_lock:
            if self._kb is None:
                self._kb = self.sources.open_kb()
            return self._kb

    def collect(self) -> Iterator[Metric]:
        with self._scrape_lock:
            return iter(list(self._collect()))

    def _collect(self) -> Iterator[Metric]:
        up: dict[str, int] = {}
        seconds: dict[str, float] = {}
        now = self.sources.now()

        def read(source: str, fn: Callable[[], object]):
            started = time.perf_counter()
            try:
                value = fn()
                up[source] = 1
                return value
            except Exception as exc:  # noqa: BLE001 - a scrape reports what it could read
                up[source] = 0
                _log.warning("metrics: %s not read: %s", source, _redacted(exc))
                return None
            finally:
                seconds[source] = seconds.get(source, 0.0) + time.perf_counter() - started

        kbm: KnowledgeBaseMetrics | None = read(
            "knowledge_base",
            lambda: read_containers(self._knowledge_base(), now, self.sources.chunker_of, self.sources.breaker),
        )
        if kbm is not None:
            if any(c.live is not None for c in kbm.containers):
                def vectors():
                    with self.sources.open_vectors() as store:
                        read_vectors(store, kbm.containers)
                        return True

                if read("vector_store", vectors) is None:
                    for c in kbm.containers:
                        if c.live is not None:
                            c.vectors_readable, c.points, c.serving_ok = False, None, None
            yield from self._containers(kbm)
        backup = read("object_store", lambda: (last_backup_at(self.sources.open_objects()),))
        yield from self._backups(backup)
        if self.sources.run_stats is not None:
            stats = read("dagster", self.sources.run_stats)
            if stats is not None:
                yield from self._runs(stats)
        if self.sources.probes is not None:
            yield from self._probes(self.sources.probes)
        yield _gauge(
            "ops_metrics_source_up",
            "1 if the source was read in this scrape, 0 if not (its metrics are left out; the server's log says why)",
            ["source"], {(s,): v for s, v in up.items()},
        )
        yield _gauge("ops_metrics_source_read_seconds", "Seconds this scrape spent reading each source",
                     ["source"], {(s,): round(v, 6) for s, v in seconds.items()})

    # ---- families ---------------------------------------------------------------------------

    def _containers(self, kbm: KnowledgeBaseMetrics) -> Iterator[Metric]:
        cs = kbm.containers
        docs = GaugeMetricFamily("ops_container_documents", "Documents of the container, by status (active, archived)",
                                 labels=["container", "status"])
        for c in cs:
            docs.add_metric([c.slug, "active"], c.active_documents)
            docs.add_metric([c.slug, "archived"], c.archived_documents)
        yield docs
        yield _gauge("ops_container_active_chunks",
                     "Chunks of the container's active documents, under the chunker of its live generation's embedder "
                     "version (of its own version before its first sync)",
                     ["container"], {(c.slug,): c.active_chunks for c in cs if c.active_chunks is not None})
        yield _gauge("ops_container_points", "Points in the container's live collection (absent if it has none, or "
                     "the collection could not be read: see ops_vector_store_readable)",
                     ["container"], {(c.slug,): c.points for c in cs if c.points is not None})
        yield _gauge("ops_vector_store_readable", "1 if the live collection was read in this scrape, 0 if not (the "
                     "vector store is down, or on the embedded engine another process holds the collection)",
                     ["container"], {(c.slug,): int(c.vectors_readable) for c in cs if c.vectors_readable is not None})
        yield _gauge("ops_container_serving_ok", "1 if the container's alias serves its recorded live generation, 0 if "
                     "it serves another collection or none (absent before the first sync)",
                     ["container"], {(c.slug,): int(c.serving_ok) for c in cs if c.serving_ok is not None})
        info = InfoMetricFamily("ops_container_live", "The container's live generation: its number, collection and "
                                "embedder version", labels=["container"])
        for c in cs:
            if c.live is not None:
                info.add_metric([c.slug], {"embedder_version": c.live.embedder_version,
                                           "collection": c.live.collection, "generation": str(c.live.number)})
        yield info
        yield _gauge("ops_container_live_generation", "Number of the container's live generation",
                     ["container"], {(c.slug,): c.live.number for c in cs if c.live is not None})
        yield _gauge("ops_container_last_sync_timestamp_seconds",
                     "Unix time of the container's last successful sync (0: never synced)",
                     ["container"], {(c.slug,): c.last_synced_at.timestamp() if c.last_synced_at else 0 for c in cs})
        yield _gauge("ops_container_sync_max_age_seconds",
                     "How old the last sync may be before the container is stale (OPS_SYNC_MAX_AGE_HOURS)",
                     ["container"], {(c.slug,): self.sources.sync_max_age_s for c in cs})
        yield _gauge("ops_container_breaker_state", "Circuit breaker of the container's source: 0 closed, 1 open, "
                     "2 half-open (the next sync is a trial)", ["container"], {(c.slug,): c.breaker_state for c in cs})
        yield _gauge("ops_container_source_failures", "Consecutive syncs that could not read the container's source",
                     ["container"], {(c.slug,): c.source_failures for c in cs})
        yield _gauge("ops_container_being_written", "1 while a running operation holds the container's lease (its "
                     "counts are moving), else 0", ["container"], {(c.slug,): int(c.being_written) for c in cs})

    def _backups(self, backup: tuple | None) -> Iterator[Metric]:
        if backup is not None:
            (at,) = backup
            yield _gauge("ops_backup_last_success_timestamp_seconds",
                         "Unix time of the newest backup in the object store (0: none)", [], {(): at.timestamp() if at else 0})
        if self.sources.backup_rpo_s is not None:
            yield _gauge("ops_backup_rpo_seconds", "Recovery point objective: the longest gap between two runs of "
                         "backup_schedule (OPS_BACKUP_CRON)", [], {(): self.sources.backup_rpo_s})

    def _runs(self, stats: RunStats) -> Iterator[Metric]:
        yield _gauge("ops_dagster_run_window_seconds", "The window of the ops_dagster_runs_recent, "
                     "ops_dagster_step_failures and ops_container_sync_retries counts (OPS_METRICS_RUN_WINDOW_S)",
                     [], {(): stats.window_s})
        yield _gauge("ops_dagster_runs_recent", "Runs created within the window, by job and current status",
                     ["dagster_job", "status"], stats.recent)
        yield _gauge("ops_dagster_runs_unfinished", "Runs queued, starting, running or canceling now, by job and status",
                     ["dagster_job", "status"], stats.unfinished)
        yield _gauge("ops_dagster_stuck_run_after_seconds", "A run still running this long after it started is stuck "
                     "(OPS_METRICS_STUCK_RUN_AFTER_S)", [], {(): stats.stuck_after_s})
        yield _gauge("ops_dagster_runs_stuck", "Runs started longer than ops_dagster_stuck_run_after_seconds ago and "
                     "still running, by job", ["dagster_job"], {(job,): n for job, n in stats.stuck.items()})
        yield _gauge("ops_dagster_oldest_running_run_seconds", "How long the longest-running run has been running "
                     "(0: none is running)", [], {(): stats.oldest_running_s})
        yield _gauge("ops_dagster_step_failures", "Failed steps of the runs that failed within the window, by job and step",
                     ["dagster_job", "step"], stats.step_failures)
        yield _gauge("ops_container_sync_retries", "Sync runs the source-change sensor requested as retries within the "
                     "window, by container", ["container"], {(c,): n for c, n in stats.sync_retries.items()})

    def _probes(self, probes: CachedProbes) -> Iterator[Metric]:
        results = probes.results()
        yield _gauge("ops_health_up", "1 if the health probe of the component passed (ops-pipelines health), else 0",
                     ["component"], {(r.component,): int(r.ok) for r in results})
        yield _gauge("ops_health_latency_seconds", "How long the component's health probe took",
                     ["component"], {(r.component,): r.latency_ms / 1000 for r in results})
        if probes.checked_at is not None:
            yield _gauge("ops_health_checked_timestamp_seconds", "Unix time the health probes last ran (they run at "
                         "most once per OPS_METRICS_HEALTH_INTERVAL_S)", [], {(): probes.checked_at})


def _gauge(name: str, documentation: str, labels: list[str], values: dict) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _redacted(exc: BaseException) -> str:
    from ops_pipelines.alerts import Redactor, truncate

    return truncate(Redactor.from_environ()(f"{type(exc).__name__}: {exc}"), 500)
