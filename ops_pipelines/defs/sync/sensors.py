"""Watch every container's source and request a sync when its fingerprint changes; retry a
failed sync, and leave alone a source whose circuit breaker is open.

The cursor keeps, per container, the request made last: the fingerprint it was for, the
container's last successful sync (``last_synced_at``) when it was made, its run key and how many
times it was retried. A request is done once the container has synced since; until then the
sensor waits for its run, and retries it if the run failed, whatever the reason (a lease held, a
Qdrant that was down, ...), after a delay that doubles from nothing to an hour. Run keys name the
sync they follow (``<slug>:<last_synced_at>:<fingerprint>``), so a source that goes A -> B -> A
gets a new key for its return to A, and a key that some run already has is never reused: Dagster
launches a run key once.
"""

import json
from datetime import datetime, timedelta

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.storage.tags import RUN_KEY_TAG

from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.resources import KnowledgeBaseResource
from ops_pipelines.defs.sync.jobs import sync_job
from ops_pipelines.ingest import OPEN, BreakerPolicy, breaker_status
from ops_pipelines.kb import Container
from ops_pipelines.kb.clock import utcnow
from ops_pipelines.sources import SourceUnavailable, open_source

NEVER = "never"
RETRY_DELAY_MAX = timedelta(hours=1)
# A request whose run never appeared (deleted from the UI, a tick lost) is made again after this.
LOST_AFTER = timedelta(minutes=10)
_FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def container_tags(slug: str) -> dict[str, str]:
    return {"ops/container": slug}


def retry_delay(retries: int) -> timedelta:
    """How long after a failed run its next retry is requested: at once for the first failure,
    then 1, 2, 4, ... minutes, at most an hour."""
    return timedelta() if retries == 0 else min(timedelta(minutes=2 ** (retries - 1)), RETRY_DELAY_MAX)


@sensor(
    job=sync_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Per container, compares a cheap fingerprint of the source (file names, sizes, mtimes; "
        "Redmine's newest updated_on and counts; a sitemap's newest lastmod) with the one of its "
        "last request and requests sync_job for the containers that changed. Retries a sync that "
        "failed, whatever the reason, until the container has synced (at once, then after 1, 2, 4, "
        "... minutes, at most an hour apart), and requests nothing (not even a fingerprint) while a "
        "source's circuit breaker is open. Also keeps the containers partitions in step with the "
        "knowledge base: adds the partition of a new container, removes that of one that is gone."
    ),
)
def source_change_sensor(context: SensorEvaluationContext, kb: KnowledgeBaseResource) -> SensorResult:
    cursor: dict = json.loads(context.cursor) if context.cursor else {}
    # The partitions are read before the containers: one added meanwhile is never taken for gone.
    known = set(context.instance.get_dynamic_partitions(containers_partitions.name))
    policy = BreakerPolicy.from_env()
    with kb.open() as store:
        containers = store.list_containers()
        states = {c.id: store.source_state(c.id) for c in containers}
    slugs = {c.slug for c in containers}
    requests = []
    for container in containers:
        state = states[container.id]
        if breaker_status(state, policy, utcnow()) == OPEN:
            context.log.warning(
                "%s: circuit breaker open until %s after %d failed syncs (%s); no sync requested",
                container.slug, state.opened_until.isoformat(timespec="seconds"), state.failures, state.last_error,
            )
            continue
        if state.failures:  # the last sync could not read the source: try again (a trial if half-open)
            requests.append(
                RunRequest(
                    partition_key=container.slug,
                    run_key=f"{container.slug}:retry:{state.failures}:{state.last_failure_at.isoformat()}",
                    tags=container_tags(container.slug),
                )
            )
            continue
        source = open_source(container.source_kind, container.source_location, log=context.log)
        try:
            fingerprint = source.fingerprint()
        except SourceUnavailable as exc:
            context.log.warning("%s: source unavailable, no sync requested: %s", container.slug, exc)
            continue
        finally:
            source.close()
        entry, request = _decide(context, container, fingerprint, cursor.get(container.slug))
        cursor[container.slug] = entry
        if request:
            requests.append(
                RunRequest(partition_key=container.slug, run_key=entry["run_key"], tags=container_tags(container.slug))
            )
    partition_requests = []
    if added := sorted(slugs - known):
        partition_requests.append(containers_partitions.build_add_request(added))
    if (gone := sorted(known - slugs)) and not slugs:
        # More likely a knowledge base that is not the one these partitions belong to (OPS_KB_URL)
        # than every container removed: keep the partitions.
        context.log.warning("the knowledge base has no containers; keeping the partitions %s", ", ".join(gone))
    elif gone:
        context.log.info("removing the partitions of containers that no longer exist: %s", ", ".join(gone))
        partition_requests.append(containers_partitions.build_delete_request(gone))
    return SensorResult(
        run_requests=requests,
        cursor=json.dumps({slug: entry for slug, entry in cursor.items() if slug in slugs}, sort_keys=True),
        dynamic_partitions_requests=partition_requests,
    )


def _decide(context, container: Container, fingerprint: str, entry) -> tuple[dict, bool]:
    """The container's cursor entry after this look, and whether it is a new request."""
    synced = _iso(container.last_synced_at) if container.last_synced_at else NEVER
    if isinstance(entry, str):  # the cursor of an older version: the fingerprint seen last
        entry = {"fingerprint": entry, "synced": synced, "run_key": None, "retries": 0, "requested_at": None}
    if entry is None or entry["fingerprint"] != fingerprint or _before(synced, entry["synced"]):
        # new, changed, or synced back to an older state (a restore): request a sync
        return _request(context, container.slug, fingerprint, synced, retries=0), True
    if synced != entry["synced"]:  # it synced since the request: in step
        return {**entry, "synced": synced}, False
    run = _latest_run(context.instance, entry["run_key"]) if entry["run_key"] else None
    now = utcnow()
    if run is None:
        requested = _parse(entry["requested_at"]) if entry["requested_at"] else None
        if requested is None or now - requested < LOST_AFTER:
            return entry, False  # not launched yet (or a cursor from an older version: nothing to wait for)
        context.log.warning("%s: the run of request %s never appeared; requesting again", container.slug, entry["run_key"])
    elif run.dagster_run.status not in _FINISHED or run.dagster_run.status == DagsterRunStatus.SUCCESS:
        return entry, False  # queued or running; or done without a sync time (nothing more to do)
    else:
        ended = datetime.fromtimestamp(run.end_time, tz=now.tzinfo) if run.end_time else now
        if now < ended + retry_delay(entry["retries"]):
            return entry, False
        context.log.info(
            "%s: sync run %s %s; requesting it again (retry %d)",
            container.slug, run.dagster_run.run_id, run.dagster_run.status.value.lower(), entry["retries"] + 1,
        )
    return _request(context, container.slug, fingerprint, synced, retries=entry["retries"] + 1), True


def _request(context, slug: str, fingerprint: str, synced: str, retries: int) -> dict:
    key = f"{slug}:{synced}:{fingerprint}" + (f":retry-{retries}" if retries else "")
    fresh, n = key, 1
    while _latest_run(context.instance, fresh) is not None:  # a cursor reset, a restore: never reuse a key
        n += 1
        fresh = f"{key}~{n}"
    return {"fingerprint": fingerprint, "synced": synced, "run_key": fresh, "retries": retries,
            "requested_at": _iso(utcnow())}


def _latest_run(instance, run_key: str):
    records = instance.get_run_records(RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
    return records[0] if records else None


def _before(synced: str, then: str) -> bool:
    """``synced`` is an older sync than ``then`` (or none at all after one)."""
    if then == NEVER:
        return False
    return synced == NEVER or _parse(synced) < _parse(then)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)
