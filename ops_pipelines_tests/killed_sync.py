"""A sync killed mid-upsert, in a process of its own, for the health tests.

``python -m ops_pipelines_tests.killed_sync SLUG CALLS`` runs ``ops-pipelines sync SLUG`` (on the
``DAGSTER_HOME`` and ``OPS_*`` of its environment) and kills itself with SIGKILL right after the
live collection's CALLS-th upsert (a batch of up to 2,048 points) has returned: no cleanup, no
lease released, what the engine wrote so far stays, as after ``kill -9`` or the OOM killer.
"""

from __future__ import annotations

import os
import signal
import sys

from ops_pipelines.vectors.edge import EdgeVectorStore


def main(slug: str, calls: str) -> None:
    upsert, left = EdgeVectorStore.upsert, [int(calls)]

    def upsert_then_die(self, name, ids, vectors, payloads):
        upsert(self, name, ids, vectors, payloads)
        left[0] -= 1
        if left[0] == 0:
            print(f"killed after upserting into {name}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    EdgeVectorStore.upsert = upsert_then_die
    from ops_pipelines.cli import main as cli

    cli(["sync", slug])


if __name__ == "__main__":
    main(*sys.argv[1:])
