import tempfile
from pathlib import Path

from dagster import (
    AssetMaterialization,
    AssetObservation,
    Config,
    OpExecutionContext,
    define_asset_job,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from ops_pipelines.archives import fetch_archive
from ops_pipelines.backup import plan_restore, resolve_backup, restore_backup, verify_backup
from ops_pipelines.defs.backup.assets import kb_backup
from ops_pipelines.defs.errors import operator_errors
from ops_pipelines.defs.leases import RESTORE_TTL_SECONDS, knowledge_base_writer
from ops_pipelines.defs.metadata import table
from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.pools import QDRANT_WRITES
from ops_pipelines.defs.resources import KnowledgeBaseResource, ObjectStoreResource, VectorStoreResource
from ops_pipelines.defs.serving import reconcile_live_alias
from ops_pipelines.defs.sync.assets import live_collection
from ops_pipelines.vectors import alias_name

backup_job = define_asset_job(
    "backup_job",
    selection=[kb_backup],
    tags={"ops/operation": "backup"},
    description="Back up the whole knowledge base to backups/ in the object store.",
)


class RestoreConfig(Config):
    backup: str = Field(
        default="latest",
        description="Which backup: latest, a backup run id (or its first characters), an object key "
        "(backups/...), a local path, or a file:// or http(s):// URL.",
    )
    dry_run: bool = Field(default=False, description="Verify the backup and report what would change; change nothing.")
    force: bool = Field(default=False, description="Replace a knowledge base that has containers.")


@op(
    description="Verify every checksum of a backup, then restore it in place: collections written and checked "
    "first, the metadata DB replaced in one transaction, aliases moved atomically.",
    pool=QDRANT_WRITES,
)
def restore_knowledge_base(
    context: OpExecutionContext,
    config: RestoreConfig,
    kb: KnowledgeBaseResource,
    vectors: VectorStoreResource,
    objects: ObjectStoreResource,
) -> None:
    with (
        operator_errors(),
        tempfile.TemporaryDirectory(prefix="ops-restore-") as tmp,
        kb.open() as store,
        vectors.open() as qdrant,
    ):
        store_objects = objects.open()
        source = resolve_backup(store_objects, config.backup)
        verified = verify_backup(fetch_archive(source, store_objects, Path(tmp)), Path(tmp) / "members", store_objects)
        context.log.info("backup %s verified: %d members", source, verified.member_count)
        if config.dry_run:
            plan = plan_restore(store, qdrant, verified)
            report = None
        else:
            with knowledge_base_writer(context, store, ttl_seconds=RESTORE_TTL_SECONDS):
                report = restore_backup(store, qdrant, store_objects, verified, force=config.force, log=context.log)
            plan = report.plan
            live = {slug: store.live_generation(store.get_container(slug).id) for slug in report.checks}
            slugs = [c.slug for c in store.list_containers()]
    context.log.info("restore plan of %s:\n%s", source, plan.describe())
    context.log_event(
        AssetObservation(
            asset_key=kb_backup.key,
            description=("dry run: nothing changed" if report is None else "restored") + f" from {source.split('?', 1)[0]}",
            metadata={
                "backup": source.split("?", 1)[0],
                "dry_run": report is None,
                "plan": table(plan.containers),
                "collections": len(plan.collections),
                "points": plan.points,
                "drops": len(plan.drops),
                **({f"{k}_seconds": v for k, v in report.seconds.items()} if report else {}),
            },
        )
    )
    if report is None:
        return
    keep_partitions_in_step(context, slugs)
    with kb.open() as store:
        reconcile_live_alias(context.instance, store, context.log)
    for slug, checks in report.checks.items():
        context.log_event(
            AssetMaterialization(
                asset_key=live_collection.key,
                partition=slug,
                description=f"restored from {source.split('?', 1)[0]}",
                metadata={
                    "alias": alias_name(slug),
                    "collection": live[slug].collection if live[slug] else None,
                    "generation": live[slug].number if live[slug] else None,
                    "embedder_version": live[slug].embedder_version if live[slug] else None,
                    "checks_passed": sum(c.passed for c in checks),
                    "rows": sum(report.rows.values()),
                },
            )
        )


def keep_partitions_in_step(context: OpExecutionContext, slugs: list[str]) -> None:
    """The containers partitions are the restored containers: the missing ones added, those of the
    containers the restore removed deleted (a schedule would sync them in vain)."""
    known = set(context.instance.get_dynamic_partitions(containers_partitions.name))
    if missing := sorted(set(slugs) - known):
        context.instance.add_dynamic_partitions(containers_partitions.name, missing)
    for slug in sorted(known - set(slugs)):
        context.instance.delete_dynamic_partition(containers_partitions.name, slug)
        context.log.info("removed the partition of container %s, which the restore removed", slug)


@job(executor_def=in_process_executor, tags={"ops/operation": "restore"}, description=restore_knowledge_base.description)
def restore_job():
    restore_knowledge_base()
