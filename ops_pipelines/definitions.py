"""The code location: every capability folder under ``defs/`` and what they share (``defs/location.py``),
loaded as a dg project (``[tool.dg]`` in pyproject.toml)."""

from pathlib import Path

from dagster import Definitions, definitions, load_from_defs_folder


@definitions
def defs() -> Definitions:
    return load_from_defs_folder(path_within_project=Path(__file__).parent)
