"""The one Definitions object of the code location: each capability's defs + shared resources."""

from dagster import Definitions

from ops_pipelines.defs import alerts, backup, export, health, maintenance, quality, refresh, sync
from ops_pipelines.defs.location import location


def build_definitions() -> Definitions:
    return location(
        sync.defs,
        refresh.defs,
        export.defs,
        backup.defs,
        health.defs,
        maintenance.defs,
        quality.defs,
        alerts.defs,
    )


defs = build_definitions()
