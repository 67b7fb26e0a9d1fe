"""The code location's graph, checked in as text: ``snapshots/definitions.txt`` lists every asset
(group, kinds, partitions), asset check (blocking or not), job, schedule (cron, default status) and
sensor (default status). A change to the graph shows up here as a diff to review, whichever
capability folder it came from.

After a deliberate change, regenerate the file and commit it with the change::

    UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest ops_pipelines_tests/test_definitions_snapshot.py

The code location is loaded in a fresh interpreter with no ``OPS_*`` variable set, so the kinds
and crons (read from the environment when the location loads) are the defaults, wherever the test
runs. The same module, run as ``python -m ops_pipelines_tests.test_definitions_snapshot``, prints
the description.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops_pipelines.kb import KnowledgeBase

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "definitions.txt"


def describe(defs) -> str:
    """One sorted line per asset, check, job, schedule and sensor of ``defs``."""
    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()
    lines = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        lines.append(
            f"asset {key.to_user_string()}  group={node.group_name}  kinds={','.join(sorted(node.kinds)) or '-'}"
            f"  partitions={_partitions(node.partitions_def)}"
        )
    for key in graph.asset_check_keys:
        spec = graph.get_check_spec(key)
        lines.append(f"check {key.asset_key.to_user_string()}:{key.name}  blocking={spec.blocking}")
    for job in repository.get_all_jobs():
        if not job.name.startswith("__"):  # Dagster's own implicit asset job
            lines.append(f"job {job.name}  partitions={_partitions(job.partitions_def)}")
    for schedule in repository.schedule_defs:
        lines.append(
            f"schedule {schedule.name}  cron={schedule.cron_schedule}  default={schedule.default_status.value}"
            f"  job={schedule.job_name}"
        )
    for sensor in repository.sensor_defs:
        lines.append(f"sensor {sensor.name}  default={sensor.default_status.value}")
    return "\n".join(sorted(lines)) + "\n"


def _partitions(partitions_def) -> str:
    """A dynamic set by its name, a multi-partition by its dimensions, none as ``-``."""
    if partitions_def is None:
        return "-"
    dimensions = getattr(partitions_def, "partitions_defs", None)
    if dimensions is not None:
        return "multi(" + " x ".join(f"{d.name}={_partitions(d.partitions_def)}" for d in dimensions) + ")"
    return getattr(partitions_def, "name", None) or type(partitions_def).__name__


def described(home: Path, **settings: str) -> str:
    """The description of the code location loaded in a fresh interpreter with DAGSTER_HOME
    ``home`` and, of the ``OPS_*`` variables, only ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}
    env |= {"DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO), **settings}
    done = subprocess.run(
        [sys.executable, "-m", "ops_pipelines_tests.test_definitions_snapshot"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_definitions_match_the_snapshot(tmp_path):
    now = described(tmp_path)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(now)
    expected = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    diff = "".join(difflib.unified_diff(
        expected.splitlines(keepends=True), now.splitlines(keepends=True),
        fromfile=str(SNAPSHOT.relative_to(REPO)), tofile="the code location now",
    ))
    if diff:
        pytest.fail(
            f"the definitions changed:\n{diff}\nIf this is intended, regenerate the snapshot: "
            "UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest ops_pipelines_tests/test_definitions_snapshot.py",
            pytrace=False,
        )


def test_kinds_name_the_configured_backends(tmp_path):
    """The object store is s3 only when OPS_S3_ENDPOINT names one; the embedding assets show the
    providers of the versions the containers use (hashing: numpy), not a model nobody runs."""
    kb_url = f"sqlite:///{tmp_path / 'kb.sqlite'}"
    kb = KnowledgeBase(kb_url)
    kb.add_container("docs", "folder", str(tmp_path), "hash-256@1")
    kb.close()
    configured = described(tmp_path, OPS_KB_URL=kb_url, OPS_S3_ENDPOINT="127.0.0.1:9000")
    assert "asset embeddings  group=sync  kinds=numpy,sqlite " in configured
    assert "asset version_embeddings  group=refresh  kinds=numpy,sqlite " in configured
    assert "asset source_documents  group=sync  kinds=s3,sqlite " in configured
    assert "asset kb_backup  group=backup  kinds=s3,sqlite " in configured
    default = SNAPSHOT.read_text()  # no S3 endpoint, no container: the folder store, the default version's model
    assert "asset source_documents  group=sync  kinds=folder,sqlite " in default
    assert "asset embeddings  group=sync  kinds=pytorch,sqlite " in default


if __name__ == "__main__":
    from ops_pipelines.definitions import defs

    sys.stdout.write(describe(defs()))
