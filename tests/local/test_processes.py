"""Child processes: output to log and callback, deadlines, whole process groups stopped."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from modelpress.local.processes import clean_line, run_process


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_lines_reach_callback_and_log_including_carriage_returns(tmp_path: Path) -> None:
    seen: list[str] = []
    code = (
        "import sys\n"
        "sys.stdout.write('first\\n'); sys.stdout.flush()\n"
        "sys.stderr.write('bar 10%\\rbar 50%\\rbar 100%\\n')\n"
        "print('\\x1b[32mgreen\\x1b[0m')\n"
    )
    result = run_process(
        python(code), env=os.environ, log_path=tmp_path / "x.log", on_line=seen.append
    )
    assert result.ok and result.exit_code == 0
    assert "first" in seen and "green" in seen
    assert [line for line in seen if line.startswith("bar")] == ["bar 10%", "bar 50%", "bar 100%"]
    assert "bar 50%" in (tmp_path / "x.log").read_text()
    assert result.tail[-1] == "green"


def test_exit_code_is_reported(tmp_path: Path) -> None:
    result = run_process(
        python("import sys; print('oops'); sys.exit(3)"),
        env=os.environ,
        log_path=tmp_path / "y.log",
    )
    assert not result.ok and result.exit_code == 3 and result.tail == ("oops",)


def test_deadline_stops_the_child_and_what_it_spawned(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(marker)!r}, 'w').write(str(p.pid))\n"
        "print('spawned', flush=True)\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    result = run_process(python(code), env=os.environ, log_path=tmp_path / "z.log", timeout=3)
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 30
    grandchild = int(marker.read_text())
    time.sleep(0.2)
    assert not _alive(grandchild), "the grandchild outlived its process group"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its (killed) parent's reaper counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_clean_line_strips_colour_codes() -> None:
    assert clean_line(b"\x1b[1;31merror\x1b[0m: x  ") == "error: x"
