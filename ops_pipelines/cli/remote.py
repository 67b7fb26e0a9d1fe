"""``ops-pipelines trigger`` and ``backfill``: runs launched through the webserver at ``DAGSTER_URL``
(GraphQL), so they go through the instance's run queue and daemon; through its authenticating
proxy with the credentials of ``DAGSTER_URL_USER``/``DAGSTER_URL_PASSWORD``, ``DAGSTER_URL_TOKEN``
or ``DAGSTER_URL_HEADERS``."""

from __future__ import annotations

import datetime
import json

import click


def _remote():
    from ops_pipelines.remote import DagsterRemote

    return DagsterRemote.from_environment()


def _run_config(config_json: tuple[str, ...]) -> dict:
    """The --config-json documents, each a JSON object, deep-merged in order."""
    merged: dict = {}
    for text in config_json:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--config-json") from exc
        if not isinstance(value, dict):
            raise click.BadParameter("must be a JSON object (the run config)", param_hint="--config-json")
        merged = _deep_merge(merged, value)
    return merged


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        both_dicts = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _deep_merge(merged[key], value) if both_dicts else value
    return merged


def _stamp(text: str) -> None:
    click.echo(f"  {datetime.datetime.now().strftime('%H:%M:%S')}  {text}")


_WAIT_HELP = "Follow it until it ends, printing each status; exit 1 if it fails, naming the step and error."
_TIMEOUT_HELP = "With --wait: give up waiting after this many seconds (exit 1; the run goes on)."


@click.command()
@click.argument("job")
@click.option("--container", default=None, help="Container slug: the partition of sync_job, export_job, refresh_job.")
@click.option("--embedder-version", default=None, help="Embedder version: refresh_job's second partition dimension.")
@click.option("--config-json", multiple=True, help="Run config as a JSON object; repeat to merge several.")
@click.option("--wait", is_flag=True, help=_WAIT_HELP)
@click.option("--timeout", type=float, default=None, help=_TIMEOUT_HELP)
def trigger(
    job: str, container: str | None, embedder_version: str | None, config_json: tuple[str, ...], wait: bool,
    timeout: float | None,
) -> None:
    """Launch JOB on the Dagster webserver at DAGSTER_URL (GraphQL); print the run id."""
    from ops_pipelines.remote import follow_run, launch_run

    run_config = _run_config(config_json)
    remote = _remote()
    launched = launch_run(remote, job, container, embedder_version, run_config)
    click.echo(f"run {launched.run_id}  {job}" + (f"  partition {launched.partition}" if launched.partition else ""))
    click.echo(f"  {remote.run_url(launched.run_id)}")
    if not wait:
        return
    outcome = follow_run(remote, launched.run_id, _stamp, timeout=timeout)
    if not outcome.success:
        failures = "\n".join(f"  {f}" for f in outcome.failures)
        raise click.ClickException(f"run {outcome.run_id} of {job} ended {outcome.status}\n{failures}")


def _backfill_change(run_id: str | None, partition: str, status: str) -> None:
    _stamp(f"backfill {status}" if run_id is None else f"run {run_id}  {partition}  {status}")


@click.command()
@click.argument("target", metavar="JOB_OR_ASSETS")
@click.option("--partitions", multiple=True, help="Partition keys, comma-separated or repeated (docs|hash-256@2).")
@click.option("--all-containers", is_flag=True, help="Every container (the containers partitions).")
@click.option("--embedder-version", default=None, help="With --all-containers: the embedder version to refresh to.")
@click.option("--config-json", multiple=True, help="Run config of every run, as a JSON object; repeat to merge.")
@click.option("--title", default=None, help="Title shown in the UI's backfills list.")
@click.option("--wait", is_flag=True, help=_WAIT_HELP)
@click.option("--timeout", type=float, default=None, help=_TIMEOUT_HELP)
def backfill(
    target: str, partitions: tuple[str, ...], all_containers: bool, embedder_version: str | None,
    config_json: tuple[str, ...], title: str | None, wait: bool, timeout: float | None,
) -> None:
    """Backfill a job (refresh_job, sync_job, ...) or assets (a,b,c) over partitions through the
    webserver at DAGSTER_URL (launchPartitionBackfill); print the backfill id."""
    from ops_pipelines.remote import follow_backfill, launch_backfill, partition_keys, resolve_target

    run_config = _run_config(config_json)
    keys_given = [k.strip() for item in partitions for k in item.split(",") if k.strip()]
    remote = _remote()
    resolved = resolve_target(remote, target)
    keys = partition_keys(resolved, keys_given, all_containers, embedder_version)
    backfill_id = launch_backfill(remote, resolved, keys, run_config, title)
    click.echo(f"backfill {backfill_id}  {resolved.label}  {len(keys)} partitions: {', '.join(keys)}")
    click.echo(f"  {remote.backfill_url(backfill_id)}")
    if not wait:
        return
    outcome = follow_backfill(remote, backfill_id, _backfill_change, timeout=timeout)
    if not outcome.success:
        lines = [f"backfill {backfill_id} of {resolved.label} ended {outcome.status}"]
        if outcome.error:
            lines.append(f"  {outcome.error}")
        for run_id, failures in outcome.failures.items():
            partition, status = outcome.runs[run_id]
            lines += [f"  run {run_id} ({partition}) {status}"] + [f"    {f}" for f in failures]
        raise click.ClickException("\n".join(lines))
