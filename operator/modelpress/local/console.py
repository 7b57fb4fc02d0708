"""What a local run shows while it works: one live line per long step on a terminal,
plain timestamped lines in a log or CI.

Child processes (Jobs, the vLLM server) report through `Step.line`; on a
terminal the step's spinner shows their latest line, elsewhere a heartbeat line
is printed every HEARTBEAT_SECONDS so a long compression is visibly alive.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from modelpress.storage.progress import format_duration

HEARTBEAT_SECONDS = 30.0
_LINE_WIDTH = 100


def _short(text: str, width: int = _LINE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class Step:
    """A long step in progress: feed it lines, then it ends with `done` or `fail`."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.started = time.monotonic()
        self.last = ""
        self.ended = False
        self._lock = threading.Lock()
        self._last_heartbeat = self.started
        self._task: Any = None
        self._stopped = threading.Event()
        self._ticker: threading.Thread | None = None

    def start_ticker(self) -> None:
        """Plain mode: a heartbeat even while the work prints nothing."""
        if self.console.heartbeat <= 0:
            return
        self._ticker = threading.Thread(
            target=self._tick, name=f"heartbeat {self.title}", daemon=True
        )
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stopped.wait(self.console.heartbeat / 2):
            with self._lock:
                if self.ended:
                    return
                now = time.monotonic()
                if now - self._last_heartbeat < self.console.heartbeat:
                    continue
                self._last_heartbeat = now
                self.console.plain(
                    f"  … {self.title}: {format_duration(self.elapsed)}: "
                    f"{self.last or 'working, no output yet'}"
                )

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, text: str) -> None:
        """The latest output of the work behind this step (thread-safe)."""
        with self._lock:
            if self.ended:
                return
            self.last = _short(text)
            if self.console.live is not None and self._task is not None:
                self.console.live.update(self._task, last=self.last)
                return
            now = time.monotonic()
            if now - self._last_heartbeat >= self.console.heartbeat:
                self._last_heartbeat = now
                self.console.plain(
                    f"  … {self.title}: {format_duration(self.elapsed)}: {self.last}"
                )

    def done(self, note: str = "") -> None:
        self._end("✓", note)

    def fail(self, note: str = "") -> None:
        self._end("✗", note)

    def _end(self, mark: str, note: str) -> None:
        with self._lock:
            if self.ended:
                return
            self.ended = True
        self._stopped.set()
        self.console.end_task(self)
        detail = f": {note}" if note else ""
        self.console.say(f"{mark} {self.title}{detail} ({format_duration(self.elapsed)})")


class Console:
    """The run's voice. `rich` defaults to whether `stream` is a terminal."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        rich: bool | None = None,
        heartbeat: float = HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        if rich is None:
            isatty = getattr(self.stream, "isatty", None)
            rich = bool(isatty and isatty())
        self.rich = rich
        self.heartbeat = heartbeat
        self.live: Any = None
        self._rich_console: Any = None
        self._lock = threading.Lock()

    def _console(self) -> Any:
        if self._rich_console is None:
            from rich.console import Console as RichConsole

            self._rich_console = RichConsole(file=self.stream, highlight=False)
        return self._rich_console

    def plain(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def say(self, text: str) -> None:
        """A line that stays on screen."""
        if self.rich:
            self._console().print(text, markup=False)
        else:
            self.plain(text)

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        """A step shown while it runs; an exception ends it as failed and propagates."""
        step = Step(self, title)
        self.start_task(step)
        try:
            yield step
        except BaseException as error:
            note = "interrupted" if isinstance(error, KeyboardInterrupt) else ""
            step.fail(note)
            raise
        step.done()

    def start_task(self, step: Step) -> None:
        if not self.rich:
            self.plain(f"→ {step.title} …")
            step.start_ticker()
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        if self.live is None:
            self.live = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[last]}", style="dim", markup=False),
                console=self._console(),
                transient=True,
            )
            self.live.start()
        step._task = self.live.add_task(step.title, last="")

    def end_task(self, step: Step) -> None:
        if self.live is None or step._task is None:
            return
        self.live.remove_task(step._task)
        step._task = None
        if not self.live.tasks:
            self.live.stop()
            self.live = None
