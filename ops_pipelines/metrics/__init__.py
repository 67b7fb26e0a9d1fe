"""Prometheus metrics of the knowledge base and its operations (``ops-pipelines metrics serve``):
a collector read at scrape time, read-only. No Dagster imports: the Dagster instance's runs come
in as ``RunStats`` from the CLI (``ops_pipelines.cli.metrics``). See docs/metrics.md."""

from ops_pipelines.metrics.collector import MetricsSources, OpsCollector, from_settings
from ops_pipelines.metrics.probes import CachedProbes
from ops_pipelines.metrics.runs import RunStats, is_retry_key

__all__ = ["CachedProbes", "MetricsSources", "OpsCollector", "RunStats", "from_settings", "is_retry_key"]
