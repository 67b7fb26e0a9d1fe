"""Every run that writes a container carries ``ops/container=<slug>``, however it was launched, so
the run queue's one-run-per-container limit holds it: the instance's run coordinator (both
dagster.yaml files) tags each run as it enters the queue. Each launch is made with the tags and
config Dagster itself gives that path, from the code location's own definitions; the limits are
the instance's, applied by the daemon's own counter."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.test_utils import create_run_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._utils.tags import TagConcurrencyLimitsCounter

from ops_pipelines.definitions import defs as code_location
from ops_pipelines.defs.partitions import refresh_partition_key
from ops_pipelines.defs.run_queue import CONTAINER_TAG, ContainerRunCoordinator

REPO = Path(__file__).resolve().parents[2]
defs = code_location()
SYNC_ASSETS = [AssetKey(k) for k in ("source_documents", "chunks", "embeddings", "live_collection")]
REFRESH_ASSETS = [AssetKey(k) for k in ("version_embeddings", "shadow_collection", "live_alias")]


def launches(slug: str) -> dict[str, dict]:
    """How each way of starting a writer of ``slug`` makes its run: job, tags, config, assets."""
    implicit = defs.resolve_implicit_global_asset_job_def()
    refresh_key = str(refresh_partition_key(slug, "hash-256@1"))
    refresh_job = defs.resolve_job_def("refresh_job")
    sync_job = defs.resolve_job_def("sync_job")
    return {
        # the asset graph's Materialize, and the runs of an asset backfill: the implicit asset job
        "asset graph: sync assets": dict(
            job_name=implicit.name, asset_selection=SYNC_ASSETS,
            tags=implicit.get_tags_for_partition_key(slug, SYNC_ASSETS),
        ),
        "asset graph: refresh assets": dict(
            job_name=implicit.name, asset_selection=REFRESH_ASSETS,
            tags=implicit.get_tags_for_partition_key(refresh_key, REFRESH_ASSETS),
        ),
        "asset graph: live_alias alone (a swap)": dict(
            job_name=implicit.name, asset_selection=[AssetKey("live_alias")],
            tags=implicit.get_tags_for_partition_key(refresh_key, [AssetKey("live_alias")]),
        ),
        # a job's launchpad or partitions page (one run, or a job backfill)
        "launchpad: sync_job": dict(job_name="sync_job", tags=sync_job.get_tags_for_partition_key(slug, None)),
        "launchpad: refresh_job": dict(
            job_name="refresh_job", tags=refresh_job.get_tags_for_partition_key(refresh_key, None)
        ),
        "launchpad: rollback_job": dict(
            job_name="rollback_job", tags={"ops/operation": "rollback"},
            run_config={"ops": {"rollback_alias": {"config": {"container": slug}}}},
        ),
        "launchpad: import_job of a slug": dict(
            job_name="import_job", tags={"ops/operation": "import"},
            run_config={"ops": {"import_container": {"config": {"archive": "exports/x.tar", "slug": slug}}}},
        ),
    }


@pytest.fixture(params=["dagster.yaml", "deploy/dagster.postgres.yaml"])
def queue_instance(request, tmp_path, monkeypatch):
    """The instance of each of the project's dagster.yaml files (the run coordinator and the run
    queue limits as written; the storage is SQLite in both)."""
    config = yaml.safe_load((REPO / request.param).read_text())
    config.pop("storage")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()


LOCATION = RemoteRepositoryOrigin(
    InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="ops_pipelines.definitions"), location_name="ops_pipelines"),
    "__repository__",
)


def submit(instance, launch: dict):
    """A run made as the webserver or the daemon makes it, submitted to the instance's queue."""
    selection = launch.get("asset_selection")
    run = create_run_for_test(
        instance,
        job_name=launch["job_name"],
        tags=launch["tags"],
        run_config=launch.get("run_config", {}),
        asset_selection=frozenset(selection) if selection else None,
        remote_job_origin=LOCATION.get_job_origin(launch["job_name"]),
    )
    instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))
    return instance.get_run_by_id(run.run_id)


def test_every_writer_of_a_container_is_tagged_with_it_however_launched(queue_instance):
    assert isinstance(queue_instance.run_coordinator, ContainerRunCoordinator)
    for what, launch in launches("docs").items():
        assert CONTAINER_TAG not in launch["tags"], what  # Dagster's own tags do not say it
        queued = submit(queue_instance, launch)
        assert queued.status.value == "QUEUED", what
        assert queued.tags.get(CONTAINER_TAG) == "docs", f"{what}: {queued.tags}"


def test_the_queue_runs_one_writer_per_container_at_a_time(queue_instance):
    """Whatever launched the first writer and the second, the second waits while the first runs;
    a writer of another container does not."""
    limits = queue_instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    docs = {what: submit(queue_instance, launch) for what, launch in launches("docs").items()}
    wiki = {what: submit(queue_instance, launch) for what, launch in launches("wiki").items()}
    for first_what, first in docs.items():
        for second_what, second in docs.items():
            if first is not second:
                blocked = TagConcurrencyLimitsCounter(limits, [first]).is_blocked(second)
                assert blocked, f"{second_what} would run beside {first_what}"
        assert not any(TagConcurrencyLimitsCounter(limits, [first]).is_blocked(w) for w in wiki.values())


def test_a_reading_run_is_not_held_behind_writers(queue_instance):
    implicit = defs.resolve_implicit_global_asset_job_def()
    export, evaluation = [AssetKey("container_export")], [AssetKey("retrieval_eval")]
    for launch in (
        dict(job_name="export_job", tags=defs.resolve_job_def("export_job").get_tags_for_partition_key("docs", None)),
        dict(job_name=implicit.name, asset_selection=export, tags=implicit.get_tags_for_partition_key("docs", export)),
        dict(job_name="retrieval_eval_job",
             tags=defs.resolve_job_def("retrieval_eval_job").get_tags_for_partition_key("docs", None)),
        dict(job_name=implicit.name, asset_selection=evaluation,
             tags=implicit.get_tags_for_partition_key("docs", evaluation)),
    ):
        assert CONTAINER_TAG not in submit(queue_instance, launch).tags


def test_the_instance_files_keep_the_same_run_queue():
    """The embedded default (`make ui`, `dg dev`) queues like production."""
    embedded = yaml.safe_load((REPO / "dagster.yaml").read_text())
    production = yaml.safe_load((REPO / "deploy" / "dagster.postgres.yaml").read_text())
    assert embedded["run_coordinator"] == production["run_coordinator"]
    assert embedded["concurrency"]["runs"] == production["concurrency"]["runs"]

