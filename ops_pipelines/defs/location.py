"""Capabilities made into a code location: their ``defs`` merged with the shared resources and the
executor. ``ops_pipelines.definitions`` merges every capability; a job-backed CLI command merges
only the one whose job it runs, so it imports no more of the Dagster layer than that job needs."""

from dagster import Definitions, in_process_executor

from ops_pipelines.defs.resources import default_resources


def location(*capabilities: Definitions) -> Definitions:
    # In-process by default, for asset backfills and UI launches too: each operation is a short
    # chain of steps, and one process per run loads the embedding model once.
    return Definitions.merge(*capabilities, Definitions(resources=default_resources(), executor=in_process_executor))
