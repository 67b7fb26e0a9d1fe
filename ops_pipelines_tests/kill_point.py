"""Run an ``ops-pipelines`` command that stops dead at a chosen moment, for a test to SIGKILL it there:

    python -m ops_pipelines_tests.kill_point MODULE:ATTRIBUTE N MARKER -- COMMAND ARGS...

The N-th call of ``MODULE.ATTRIBUTE`` (a function, or a method as ``Class.method``) writes the
file MARKER and blocks for good instead of running: everything before that call is done, nothing
of it or after it is. The test polls for MARKER, then kills the process: a kill at an exact
moment, however fast the moments before it go. Nothing else of the command is changed.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path


def arm(target: str, nth: int, marker: Path) -> None:
    module, _, attribute = target.partition(":")
    owner = importlib.import_module(module)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0
    lock = threading.Lock()

    def stop_at_the_nth_call(*args, **kwargs):
        nonlocal calls
        with lock:
            calls += 1
            stop = calls == nth
        if stop:
            marker.write_text(f"{target} call {nth}\n")
            threading.Event().wait()  # until SIGKILL
        return original(*args, **kwargs)

    setattr(owner, name, stop_at_the_nth_call)


if __name__ == "__main__":
    target, nth, marker, separator, *command = sys.argv[1:]
    assert separator == "--", __doc__
    arm(target, int(nth), Path(marker))
    from ops_pipelines.cli import main

    main(command, prog_name="ops-pipelines")
