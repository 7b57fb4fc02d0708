"""The package stays readable: small modules, and the layering of docs/architecture.md.

The layering itself is checked by import-linter's contracts in pyproject.toml
(`lint-imports`, run by scripts/test); these tests keep the contracts honest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "operator" / "modelpress"
MAX_LINES = 400


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules by concern (at most {MAX_LINES} lines)"


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("modelpress.handlers.registry", ("torch", "transformers", "llmcompressor")),
        ("modelpress.local.runner", ("kopf", "modelpress.handlers", "torch")),
        ("modelpress.plan.reconcile", ("kopf", "boto3", "torch")),
    ],
)
def test_importing_a_layer_loads_nothing_from_the_layers_it_must_not_reach(
    module: str, forbidden: tuple[str, ...]
) -> None:
    """What the contracts say statically, at run time: a fresh interpreter imports the
    module and reports which forbidden packages ended up loaded."""
    probe = f"import sys, {module}; print(sorted(n for n in {forbidden!r} if n in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
