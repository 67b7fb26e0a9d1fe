from dagster import define_asset_job, in_process_executor

from ops_pipelines.defs.partitions import containers_partitions
from ops_pipelines.defs.sync.assets import sync_assets

# The four steps are a strict chain, so a process per step would only add start-up time (and
# each step would re-import the model); one process runs them in order.
sync_job = define_asset_job(
    "sync_job",
    selection=sync_assets,
    partitions_def=containers_partitions,
    executor_def=in_process_executor,
    description=(
        "Bring one container up to date with its source: documents, chunks, embeddings (cache "
        "first) and the live collection. Safe to re-run at any time."
    ),
)
