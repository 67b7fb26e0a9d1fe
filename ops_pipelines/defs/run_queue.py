"""The instance's run coordinator (``run_coordinator`` in dagster.yaml): Dagster's queued run
coordinator, which also tags each run that writes one container ``ops/container=<slug>`` as it
enters the queue, so the queue's one-run-per-container limit holds every writer, however launched.

Dagster's own tags name the container of only some runs, and each in its own way: the container
dimension of a refresh partition (``dagster/partition/container``), a container partition
(``dagster/partition``, also the only tag of a sync from the asset graph or an asset backfill);
runs of jobs without partitions name it in their config (rollback_job's ``container``,
import_job's ``slug``). The coordinator reads them all (``alerts.run_container``, what the failure
alerts name a run's container by) into the one tag the queue limits. Runs that only read a
container (an export, an evaluation) are left out: they need not wait for its writers.
"""

from __future__ import annotations

from dagster import AssetKey, DagsterRun, QueuedRunCoordinator
from dagster._core.run_coordinator import SubmitRunContext

CONTAINER_TAG = "ops/container"
READING_JOBS = frozenset({"export_job", "retrieval_eval_job"})
READING_ASSETS = frozenset({AssetKey("container_export"), AssetKey("retrieval_eval")})


def written_container(run: DagsterRun) -> str | None:
    """The container the run writes, if it writes one."""
    # Imported here: every process that loads the instance builds its coordinator, and only the
    # webserver and the daemon submit runs (a CLI command runs its job in-process).
    from ops_pipelines.alerts import run_container

    if run.job_name in READING_JOBS or (run.asset_selection and run.asset_selection <= READING_ASSETS):
        return None
    return run_container(run.tags, run.run_config)


class ContainerRunCoordinator(QueuedRunCoordinator):
    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        slug = written_container(run)
        if slug and run.tags.get(CONTAINER_TAG) != slug:
            self._instance.add_run_tags(run.run_id, {CONTAINER_TAG: slug})
        return super().submit_run(context)
