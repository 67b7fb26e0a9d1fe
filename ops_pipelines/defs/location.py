"""What the capability folders share in the code location, and one capability loaded on its own:
a job-backed CLI command loads only the folder whose job it runs, so it imports no more of the
Dagster layer than that job needs, and gets the same job as the code location."""

import warnings
from importlib import import_module
from pathlib import Path

from dagster import ComponentTree, Definitions, PreviewWarning, definitions, in_process_executor

from ops_pipelines.defs.resources import default_resources

# The dg project root (pyproject.toml) in a checkout: ComponentTree asks for one; plain Python
# modules, all a capability folder holds, never read it.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@definitions
def shared() -> Definitions:
    """The resources, configured from this process's environment when it is called (at load), and
    the executor. In-process by default, for asset backfills and UI launches too: each operation
    is a short chain of steps, and one process per run loads the embedding model once."""
    return Definitions(resources=default_resources(), executor=in_process_executor)


def load_capability(name: str) -> Definitions:
    """The folder ``ops_pipelines/defs/<name>`` loaded as ``load_from_defs_folder`` loads it in the
    code location: Dagster's own loader, over that folder alone. Built at the folder, not at the
    tree's root, which would add the project-wide catalogue of plugin components (a tenth of a
    second per call, and no part of any job)."""
    tree = ComponentTree.from_module(import_module(f"ops_pipelines.defs.{name}"), PROJECT_ROOT)
    with warnings.catch_warnings():
        # Dagster's module loader is marked preview; load_from_defs_folder silences it as well.
        warnings.simplefilter("ignore", PreviewWarning)
        return tree.build_defs(tree.defs_module_path)
