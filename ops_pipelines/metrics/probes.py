"""The health probes (``ops_pipelines.health``) behind the metrics endpoint: run at most once per
interval, whatever the scrape rate, and served from the last results in between.

The probes cost more than the rest of a scrape: the object-store probe writes, reads and deletes
an object, the serving probe counts every live collection, and the embedder probe loads each
model in use into the process (hundreds of MB for a sentence-transformers model), so the metrics
server leaves that one out unless asked (``ops-pipelines metrics serve --probe-embedders``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ops_pipelines.health import HealthResult


class CachedProbes:
    def __init__(self, run: Callable[[], list[HealthResult]], interval_s: float, clock: Callable[[], float] = time.time):
        self._run, self.interval_s, self._clock = run, interval_s, clock
        self._lock = threading.Lock()
        self._results: list[HealthResult] = []
        self.checked_at: float | None = None  # unix time of the last run

    def results(self) -> list[HealthResult]:
        """The last results, run again first if they are older than the interval (one scrape at a
        time runs them; a concurrent one waits for it rather than probing twice)."""
        with self._lock:
            now = self._clock()
            if self.checked_at is None or now - self.checked_at >= self.interval_s:
                self._results = self._run()
                self.checked_at = self._clock()
            return list(self._results)
