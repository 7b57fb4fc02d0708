"""Progress of long steps as plain log lines: done/total, rate, ETA and step-specific numbers.

Compression runs in Job pods whose logs are read line by line (`kubectl logs`),
so progress is a throttled line every few seconds, never a redrawn bar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("modelpress.compress.progress")

DEFAULT_INTERVAL = 10.0


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """Counts work done toward `total` and logs at most every `interval` seconds.

    `start` lets a resumed run begin at the work already done; the rate and ETA
    count only what this run did.
    """

    def __init__(
        self,
        what: str,
        *,
        total: int,
        unit: str,
        start: int = 0,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.done = start
        self._start_done = start
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_log = self._started
        self.last_line = ""

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def rate(self) -> float:
        elapsed = self.elapsed
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def advance(self, count: int = 1, **numbers: str) -> None:
        """Count `count` more units; `numbers` are extra fields for the line (loss=..., ...)."""
        self.done += count
        now = self._clock()
        if self.done >= self.total or now - self._last_log >= self._interval:
            self._last_log = now
            self.last_line = self.line(**numbers)
            log.info("%s", self.last_line)

    def line(self, **numbers: str) -> str:
        eta = self.eta()
        parts = [
            f"{self.what}: {self.done}/{self.total} {self.unit}",
            *(f"{name} {value}" for name, value in numbers.items()),
            f"elapsed {format_seconds(self.elapsed)}",
            "ETA " + (format_seconds(eta) if eta is not None else "?"),
        ]
        return ", ".join(parts)
