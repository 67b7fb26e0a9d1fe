"""The commands run each job from its own capability's Definitions: the same job as the code
location's, steps, config schema and resources included."""

from __future__ import annotations

import pytest

from ops_pipelines.cli.jobs import CAPABILITIES, console_logger, job_definition
from ops_pipelines.definitions import defs


@pytest.fixture
def location(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return defs()


@pytest.mark.parametrize("job_name", sorted(CAPABILITIES))
def test_a_commands_job_is_the_code_locations_job(location, job_name):
    theirs = location.resolve_job_def(job_name)
    ours = job_definition(job_name)
    assert ours.get_job_snapshot_id() == theirs.get_job_snapshot_id()
    assert set(ours.resource_defs) == set(theirs.resource_defs)


@pytest.mark.parametrize("debug", [False, True])
def test_the_commands_console_logger_keeps_the_job_the_code_locations(location, debug):
    """Its console logger is Dagster's under the same name, config and description: a run made by a
    command can be re-executed from the UI with its run config."""
    theirs = location.resolve_job_def("sync_job")
    ours = job_definition("sync_job", {"console": console_logger(debug)})
    assert ours.get_job_snapshot_id() == theirs.get_job_snapshot_id()
