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


def test_job_backed_commands_share_one_way_to_run_a_job():
    """The CLI is a package of one module per area; only ``cli/jobs.py`` executes a job (its
    ``run_job``), so every command runs and reports a run the same way."""
    from pathlib import Path

    import ops_pipelines.cli as cli

    modules = {path.name: path.read_text() for path in Path(cli.__file__).parent.glob("*.py")}
    assert {"containers.py", "jobs.py", "remote.py", "inspect.py"} <= set(modules)
    running = {name for name, text in modules.items() if "execute_in_process" in text or "materialize(" in text}
    assert running == {"jobs.py"}
    assert all(len(text.splitlines()) < 400 for text in modules.values())
