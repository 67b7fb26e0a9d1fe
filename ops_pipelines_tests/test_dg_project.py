"""The repository is a dg project: ``dg check defs`` (dagster-dg-cli, in the dev extra) finds it
from ``[tool.dg]`` in pyproject.toml, loads the code location from ``ops_pipelines/defs`` and
validates it, saying no warning about our configuration (a code location name that differs from
the one the workspace files give it, a dagster.yaml that is not DAGSTER_HOME's)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_dg_check_defs_loads_the_code_location(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # as `make ui` has it
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}
    # the venv that runs the tests is the one dg is in: no "active venv is not the project's" note
    env |= {"DAGSTER_HOME": str(home), "VIRTUAL_ENV": sys.prefix, "CI": "true"}
    done = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "dg"), "check", "defs"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "All definitions loaded successfully." in done.stdout
    assert not re.findall(r".*(?:WARNING|Warning\b).*", output), output
