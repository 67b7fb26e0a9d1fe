"""``ops-pipelines metrics serve``: Prometheus metrics of the knowledge base, its containers, the
Dagster runs and the health probes, read when Prometheus scrapes (docs/metrics.md).

The knowledge-base side is ``ops_pipelines.metrics`` (no Dagster); the Dagster instance is read
here: runs by job and status, stuck runs, failed steps and sync retries.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime

import click

from ops_pipelines import settings
from ops_pipelines.cli import common

# Runs read per scrape, at most, for each of the windowed and the unfinished lists.
RUN_LIMIT = 5000
# Failed runs of the window whose failed steps are read (newest first); a failed run's events never
# change, so each is read once and remembered, at most FAILED_RUN_READS new ones per scrape (the
# first scrapes after a start catch up over a few scrapes instead of taking one long one).
FAILED_RUN_LIMIT = 200
FAILED_RUN_READS = 25
_UNFINISHED = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
_RUNNING = ("STARTING", "STARTED", "CANCELING")


class DagsterRuns:
    """Reads ``RunStats`` from a Dagster instance: a few run-storage queries per scrape, and the
    step failures of each failed run once."""

    def __init__(self, instance, window_s: float, stuck_after_s: float, clock=time.time):
        self.instance, self.window_s, self.stuck_after_s, self._clock = instance, window_s, stuck_after_s, clock
        self._failed_steps: OrderedDict[str, list[str]] = OrderedDict()

    def __call__(self):
        from dagster import DagsterRunStatus, RunsFilter
        from dagster._core.storage.tags import RUN_KEY_TAG

        from ops_pipelines.metrics import RunStats, is_retry_key

        now = self._clock()
        stats = RunStats(self.window_s, self.stuck_after_s)
        since = datetime.fromtimestamp(now - self.window_s, UTC)
        recent = self.instance.get_run_records(RunsFilter(created_after=since), limit=RUN_LIMIT)
        failed = []
        for record in recent:
            run = record.dagster_run
            key = (run.job_name, run.status.value)
            stats.recent[key] = stats.recent.get(key, 0) + 1
            if run.status == DagsterRunStatus.FAILURE and len(failed) < FAILED_RUN_LIMIT:
                failed.append(run)
            if is_retry_key(run.tags.get(RUN_KEY_TAG)) and (container := run.tags.get("ops/container")):
                stats.sync_retries[container] = stats.sync_retries.get(container, 0) + 1
        reads = FAILED_RUN_READS
        for run in failed:
            if run.run_id not in self._failed_steps:
                if not reads:
                    continue  # read at a following scrape
                reads -= 1
            for step in self._steps_failed(run.run_id):
                key = (run.job_name, step)
                stats.step_failures[key] = stats.step_failures.get(key, 0) + 1
        unfinished = self.instance.get_run_records(
            RunsFilter(statuses=[DagsterRunStatus(s) for s in _UNFINISHED]), limit=RUN_LIMIT
        )
        for record in unfinished:
            run = record.dagster_run
            key = (run.job_name, run.status.value)
            stats.unfinished[key] = stats.unfinished.get(key, 0) + 1
            if run.status.value in _RUNNING and record.start_time:
                running_s = max(now - record.start_time, 0.0)
                stats.oldest_running_s = max(stats.oldest_running_s, running_s)
                if running_s > self.stuck_after_s:
                    stats.stuck[run.job_name] = stats.stuck.get(run.job_name, 0) + 1
        return stats

    def _steps_failed(self, run_id: str) -> list[str]:
        from dagster import DagsterEventType

        if run_id not in self._failed_steps:
            entries = self.instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
            self._failed_steps[run_id] = [e.dagster_event.step_key for e in entries if e.dagster_event and e.dagster_event.step_key]
            while len(self._failed_steps) > 4 * FAILED_RUN_LIMIT:
                self._failed_steps.popitem(last=False)
        return self._failed_steps[run_id]


def backup_rpo_seconds(cron: str, now: float | None = None) -> float:
    """The longest gap between two runs of ``cron`` (UTC) over the next 400 days (at most 5,000
    runs looked at): the data a backup_schedule on it can lose."""
    from dagster._utils.schedules import cron_string_iterator

    start = time.time() if now is None else now
    horizon = start + 400 * 86400
    gaps, previous = [], None
    for n, moment in enumerate(cron_string_iterator(start, cron, "UTC")):
        stamp = moment.timestamp()
        if previous is not None:
            gaps.append(stamp - previous)
        previous = stamp
        if stamp > horizon or n >= 5000:
            break
    if not gaps:
        raise ValueError(f"OPS_BACKUP_CRON={cron!r} never runs")
    return max(gaps)


def run_probes(instance, vectors, probe_embedders: bool):
    """The probes of ``ops-pipelines health`` (the embedders only if asked: loading the models
    costs the metrics process their memory); ``vectors`` opens the vector store as the scrapes do
    (collection shards without waiting)."""
    from ops_pipelines import health
    from ops_pipelines.objects import open_object_store

    kb_url = settings.kb_url()

    def probes():
        results = [
            health.probe("metadata_db", lambda: health.check_database(kb_url)),
            health.probe("qdrant", lambda: health.check_vectors(vectors)),
            health.probe("serving", lambda: health.check_serving(vectors, kb_url)),
            health.probe("object_store", lambda: health.check_objects(open_object_store())),
        ]
        if probe_embedders:
            results.append(health.probe("embedders", lambda: health.check_embedders(health.container_embedders(kb_url))))
        results.append(health.probe("dagster_instance", lambda: health.check_dagster_instance(instance)))
        results.append(health.probe_freshness(kb_url))
        return results

    return probes


def build_collector(instance, probe_embedders: bool = False):
    """The collector ``serve`` registers, from this process's settings; ``ValueError`` names a bad one."""
    import os

    from ops_pipelines.metrics import CachedProbes, OpsCollector, from_settings

    cron = os.environ.get("OPS_BACKUP_CRON", "0 2 * * *")
    try:
        rpo = backup_rpo_seconds(cron)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"OPS_BACKUP_CRON={cron!r} is not a cron schedule: {exc}") from exc
    runs = DagsterRuns(instance, settings.metrics_run_window_seconds(), settings.metrics_stuck_run_after_seconds())
    sources = from_settings(run_stats=runs, backup_rpo_s=rpo)
    sources.probes = CachedProbes(
        run_probes(instance, sources.open_vectors, probe_embedders), settings.metrics_health_interval_seconds()
    )
    return OpsCollector(sources)


@click.group()
def metrics() -> None:
    """Prometheus metrics of the knowledge base and its runs (docs/metrics.md)."""


@metrics.command()
@click.option("--port", type=click.IntRange(0, 65535), default=9464, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface, as in a container).")
@click.option("--probe-embedders", is_flag=True,
              help="Also run the embedder health probe (loads every model in use into this process).")
def serve(port: int, host: str, probe_embedders: bool) -> None:
    """Serve /metrics for Prometheus until stopped (SIGTERM or Ctrl-C). Everything is read at scrape
    time, read-only; the health probes run at most every OPS_METRICS_HEALTH_INTERVAL_S seconds."""
    from prometheus_client import CollectorRegistry, start_http_server

    instance = common.instance()
    try:
        try:
            collector = build_collector(instance, probe_embedders)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        click.echo(f"serving metrics on http://{host}:{server.server_port}/metrics", err=True)
        # What a scrape could not read, on stderr (redacted): the collector's warnings.
        log = logging.StreamHandler()
        log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("ops_pipelines.metrics")
        logger.addHandler(log)
        logger.setLevel(logging.INFO)
        try:
            while not stop.wait(1.0):  # wakes each second so a signal is seen promptly
                pass
        finally:
            logger.removeHandler(log)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            server.shutdown()
            server.server_close()
            thread.join(10)
            collector.close()
    finally:
        instance.dispose()
