"""docs/sizing.md carries the table benchmarks/sizing_table.py generates from the current code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_table_is_current() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sizing_table.py"), "--docs",
         str(ROOT / "docs" / "sizing.md"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
