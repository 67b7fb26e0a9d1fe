"""The one Definitions object of the code location: each capability's defs + shared resources."""

from dagster import Definitions

from ops_pipelines.defs import refresh, sync
from ops_pipelines.defs.resources import default_resources


def build_definitions() -> Definitions:
    return Definitions.merge(sync.defs, refresh.defs, Definitions(resources=default_resources()))


defs = build_definitions()
