"""Progress lines at a human cadence: at most one per ``every`` seconds, whatever the batch size."""

from __future__ import annotations

import logging
import time

EVERY_SECONDS = 10.0


class Progress:
    def __init__(self, log: logging.Logger, every: float = EVERY_SECONDS):
        self.log, self.every, self._last = log, every, time.monotonic()

    def __call__(self, message: str, *args) -> None:
        """Log ``message`` if the last line is at least ``every`` seconds old."""
        if time.monotonic() - self._last >= self.every:
            self.log.info(message, *args)
            self._last = time.monotonic()
