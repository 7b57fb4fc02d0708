"""Child processes with their output in a log file and, line by line, in a callback.

Each child runs in its own process group so that stopping it (Ctrl-C, a
deadline, the end of a run) also stops whatever it spawned: vLLM starts an
engine-core and a worker process, and a stray one would keep the port and
gigabytes of memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LineCallback = Callable[[str], None]

#: Lines kept in memory to explain a failure; the log file has them all.
TAIL_LINES = 40
#: Seconds a child gets to exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def clean_line(raw: bytes) -> str:
    """Decoded text of one output line, terminal colour codes removed."""
    return _ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip()


@dataclass(frozen=True)
class ProcessResult:
    """How a child ended."""

    argv: tuple[str, ...]
    exit_code: int
    seconds: float
    timed_out: bool
    log_path: Path
    tail: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class ManagedProcess:
    """A started child whose merged stdout and stderr go to `log_path` and `on_line`.

    Progress bars in the child's output (carriage returns) count as lines too,
    so the caller sees them move.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        on_line: LineCallback | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.log_path = log_path
        self._on_line = on_line
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self.started = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        started_at = time.strftime("%Y-%m-%d %H:%M:%S")
        self._log.write(f"=== {started_at} {shlex.join(self.argv)}\n".encode())
        self._log.flush()
        try:
            self._process = subprocess.Popen(
                self.argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError:
            self._log.close()
            raise
        self._reader = threading.Thread(target=self._read, name=f"output of {argv[0]}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def tail(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._tail)

    def _read(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        pending = b""
        while chunk := stream.read1(65536):  # type: ignore[attr-defined]
            self._log.write(chunk)
            self._log.flush()
            pending += chunk
            *lines, pending = _LINE_BREAK.split(pending)
            for raw in lines:
                self._emit(raw)
        if pending:
            self._emit(pending)

    def _emit(self, raw: bytes) -> None:
        line = clean_line(raw)
        if not line.strip():
            return
        with self._lock:
            self._tail.append(line)
        if self._on_line is not None:
            self._on_line(line)

    def poll(self) -> int | None:
        """The exit code, or None while the child runs."""
        return self._process.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit; raises subprocess.TimeoutExpired after `timeout`."""
        code = self._process.wait(timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int:
        """SIGTERM the child's process group, then SIGKILL it after `grace` seconds."""
        if self._process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._process.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._process.wait()
        # Helpers the child left behind in its group go too.
        self._signal(signal.SIGKILL)
        self._reader.join(timeout=5)
        self._log.close()
        return self._process.returncode

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, sig)

    def result(self, timed_out: bool = False) -> ProcessResult:
        return ProcessResult(
            argv=self.argv,
            exit_code=self._process.returncode if self._process.returncode is not None else -1,
            seconds=time.monotonic() - self.started,
            timed_out=timed_out,
            log_path=self.log_path,
            tail=self.tail,
        )


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    on_line: LineCallback | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> ProcessResult:
    """Run a child to completion (or until `timeout` seconds, then stop it).

    An interrupt (Ctrl-C) stops the child and its helpers before propagating.
    """
    process = ManagedProcess(argv, env=env, log_path=log_path, on_line=on_line, cwd=cwd)
    timed_out = False
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        process.stop()
    return process.result(timed_out)
