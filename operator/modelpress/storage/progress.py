"""Transfer progress: bytes, rate and ETA, delivered to a callback.

`ProgressTracker` turns byte counts from many transfer threads into throttled
`ProgressEvent`s. Reporters print them: a live bar on a terminal, plain
lines in logs (pods, CI) where a bar would be noise.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass(frozen=True)
class ProgressEvent:
    """A snapshot of one transfer (a publish, a fetch)."""

    action: str
    target: str
    path: str | None
    done_bytes: int
    total_bytes: int
    rate: float
    eta_seconds: float | None
    finished: bool

    @property
    def fraction(self) -> float:
        return 1.0 if self.total_bytes == 0 else min(1.0, self.done_bytes / self.total_bytes)


ProgressCallback = Callable[[ProgressEvent], None]


class ProgressTracker:
    """Thread-safe byte counter that emits events at most every `min_interval` seconds.

    Bytes found already in place (`skip`) count as done but not toward the rate,
    so a resumed download does not claim an impossible speed.
    """

    def __init__(
        self,
        action: str,
        target: str,
        total_bytes: int,
        callback: ProgressCallback | None,
        *,
        min_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._action = action
        self._target = target
        self._total = total_bytes
        self._callback = callback
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_emit: float | None = None
        self._moved = 0
        self._skipped = 0
        self._path: str | None = None

    def start_file(self, path: str) -> None:
        with self._lock:
            self._path = path
            self._emit(force=False)

    def advance(self, count: int) -> None:
        """Count bytes moved; safe to call from transfer threads (negative undoes a retry)."""
        with self._lock:
            self._moved += count
            self._emit(force=False)

    def skip(self, count: int) -> None:
        """Count bytes that were already in place."""
        with self._lock:
            self._skipped += count
            self._emit(force=False)

    def finish(self) -> None:
        with self._lock:
            self._emit(force=True, finished=True)

    def snapshot(self, finished: bool = False) -> ProgressEvent:
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = self._moved / elapsed
        done = min(self._moved + self._skipped, self._total) if self._total else 0
        remaining = self._total - done
        eta = 0.0 if remaining <= 0 else (remaining / rate if rate > 0 else None)
        return ProgressEvent(
            action=self._action,
            target=self._target,
            path=self._path,
            done_bytes=done,
            total_bytes=self._total,
            rate=rate,
            eta_seconds=eta,
            finished=finished,
        )

    def _emit(self, *, force: bool, finished: bool = False) -> None:
        if self._callback is None:
            return
        now = self._clock()
        if not force and self._last_emit is not None and now - self._last_emit < self._min_interval:
            return
        self._last_emit = now
        self._callback(self.snapshot(finished))


def format_bytes(count: float) -> str:
    """Binary units, three significant figures: '1.50 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float | None) -> str:
    """'1h02m', '3m05s', '12s', or '?' when unknown."""
    if seconds is None:
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def describe(event: ProgressEvent) -> str:
    """One log line for an event."""
    percent = f"{event.fraction * 100:.0f}%"
    line = (
        f"{event.action} {event.target}: {format_bytes(event.done_bytes)} / "
        f"{format_bytes(event.total_bytes)} ({percent}), {format_bytes(event.rate)}/s"
    )
    if event.finished:
        return line + ", done"
    line += f", ETA {format_duration(event.eta_seconds)}"
    return line + (f" [{event.path}]" if event.path else "")


class PlainReporter:
    """Prints a line at the start, every `interval` seconds, and at the end."""

    def __init__(
        self,
        stream: TextIO | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._last: float | None = None

    def __call__(self, event: ProgressEvent) -> None:
        now = self._clock()
        if event.finished or self._last is None or now - self._last >= self._interval:
            self._last = now
            stream = self._stream or sys.stderr
            print(describe(event), file=stream, flush=True)


class RichReporter:
    """A live progress bar on a terminal (rich), started at the first event."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, event: ProgressEvent) -> None:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TextColumn("{task.fields[rate]}/s ETA {task.fields[eta]}"),
                console=Console(file=self._stream or sys.stderr),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                f"{event.action} {event.target}", total=event.total_bytes, rate="?", eta="?"
            )
        self._progress.update(
            self._task,
            completed=event.done_bytes,
            rate=format_bytes(event.rate),
            eta=format_duration(event.eta_seconds),
        )
        if event.finished:
            self._progress.stop()
            self._progress = None


def default_reporter(stream: TextIO | None = None) -> ProgressCallback:
    """A live bar when `stream` (stderr by default) is a terminal, plain lines otherwise."""
    target = stream or sys.stderr
    isatty = getattr(target, "isatty", None)
    if isatty is not None and isatty():
        return RichReporter(target)
    return PlainReporter(target)
