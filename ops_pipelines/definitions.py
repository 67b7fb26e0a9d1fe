"""The one Definitions object of the code location: each capability's defs + shared resources."""

from dagster import Definitions, in_process_executor

from ops_pipelines.defs import alerts, backup, export, health, maintenance, refresh, sync
from ops_pipelines.defs.resources import default_resources


def build_definitions() -> Definitions:
    # In-process by default, for asset backfills and UI launches too: each operation is a short
    # chain of steps, and one process per run loads the embedding model once.
    return Definitions.merge(
        sync.defs,
        refresh.defs,
        export.defs,
        backup.defs,
        health.defs,
        maintenance.defs,
        alerts.defs,
        Definitions(resources=default_resources(), executor=in_process_executor),
    )


defs = build_definitions()
