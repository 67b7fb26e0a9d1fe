"""Operator errors have one root type, ``OperatorError``: what the CLI prints alone and a failed
run shows first. Each keeps its older base too, for callers that catch that."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

import ops_pipelines
from ops_pipelines.errors import OperatorError

REPO = Path(__file__).resolve().parents[1]

OPERATOR_ERRORS = {
    "ops_pipelines.archives.ArchiveError": ValueError,
    "ops_pipelines.backup.restore.RestoreRefused": ValueError,
    "ops_pipelines.embedders.InvalidRegistry": ValueError,
    "ops_pipelines.embedders.UnknownEmbedderVersion": LookupError,
    "ops_pipelines.ingest.ArchiveRefused": RuntimeError,
    "ops_pipelines.ingest.BadVectors": ValueError,
    "ops_pipelines.ingest.MissingEmbeddings": RuntimeError,
    "ops_pipelines.kb.ContainerExists": ValueError,
    "ops_pipelines.kb.ContainerNotFound": LookupError,
    "ops_pipelines.kb.GenerationNotFound": LookupError,
    "ops_pipelines.kb.migrations.SchemaTooNew": RuntimeError,
    "ops_pipelines.objects.ObjectNotFound": LookupError,
    "ops_pipelines.objects.ObjectStoreUnavailable": RuntimeError,
    "ops_pipelines.refresh.NoChunks": RuntimeError,
    "ops_pipelines.refresh.NothingToRollBack": LookupError,
    "ops_pipelines.refresh.RefreshRefused": ValueError,
    "ops_pipelines.remote.RemoteError": RuntimeError,
    "ops_pipelines.search.NotSynced": RuntimeError,
    "ops_pipelines.sources.SourceUnavailable": RuntimeError,
    "ops_pipelines.vectors.DimensionMismatch": ValueError,
    "ops_pipelines.vectors.migrate.MigrationFailed": RuntimeError,
}

# Exceptions of ours that never reach an operator as an error: a record skipped and named in the
# run's counts, and a lookup the vector stores answer for their callers. (A click exception is the
# CLI's own report, e.g. of a run whose step failed with an operator error.)
INTERNAL = {"UnreadableDocument", "CollectionNotFound"}


def named(path: str) -> type:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path", sorted(OPERATOR_ERRORS))
def test_each_operator_error_has_the_root_type_and_keeps_its_base(path):
    cls = named(path)
    assert issubclass(cls, OperatorError) and issubclass(cls, OPERATOR_ERRORS[path])


def test_every_exception_of_ours_is_an_operator_error_or_known_internal():
    """A new error class joins the root type, or is named here with the reason it is internal."""
    ours = {}
    for info in pkgutil.walk_packages(ops_pipelines.__path__, "ops_pipelines."):
        if info.name.endswith(".__main__"):  # runs the CLI
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                ours[f"{info.name}.{name}"] = obj
    strays = sorted(
        path for path, cls in ours.items()
        if not issubclass(cls, (OperatorError, click.ClickException))
        and not cls.__name__.startswith("_")
        and cls.__name__ not in INTERNAL
    )
    assert not strays
    assert len(ours) > len(OPERATOR_ERRORS)


def test_the_dagster_layers_errors_import_no_package_of_ours():
    """defs/errors.py, which every step imports, lists no classes: it loads nothing of ours but the root type."""
    probe = "import json, sys; import ops_pipelines.defs.errors; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    loaded = {m for m in json.loads(done.stdout) if m.startswith("ops_pipelines")}
    assert loaded == {"ops_pipelines", "ops_pipelines.defs", "ops_pipelines.defs.errors", "ops_pipelines.errors"}
