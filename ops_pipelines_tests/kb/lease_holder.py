"""A lease holder in a process of its own, for ``test_leases``.

``python -m ops_pipelines_tests.kb.lease_holder URL TARGET HOLDER WAIT TTL`` takes the lease of
container TARGET (or the whole-KB lease if TARGET is ``kb``). On stdout it says ``ready`` once
started (the test starts every process first, so their start-up times overlap), then, after a
``go`` line on stdin, ``trying`` before it asks, ``held`` once it holds, or ``busy <seconds it
waited> <message>`` (exit 3) if it could not; it holds until a ``release`` line on stdin (or
stdin closes) and says ``released``.
"""

from __future__ import annotations

import sys
import time

from ops_pipelines.errors import VectorStoreBusy
from ops_pipelines.kb import KnowledgeBase


def main(url: str, target: str, holder: str, wait: str, ttl: str) -> int:
    kb = KnowledgeBase(url)
    options = {"wait_seconds": float(wait), "ttl_seconds": float(ttl)}
    lease = kb.kb_lease(holder, **options) if target == "kb" else kb.container_lease(target, holder, **options)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    print("trying", flush=True)
    started = time.monotonic()
    try:
        with lease:
            print("held", flush=True)
            for line in sys.stdin:
                if line.strip() == "release":
                    break
    except VectorStoreBusy as exc:
        print("busy", f"{time.monotonic() - started:.3f}", " ".join(str(exc).split()), flush=True)
        return 3
    print("released", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
