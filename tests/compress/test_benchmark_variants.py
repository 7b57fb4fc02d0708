"""The compression benchmark's variants are ones the API accepts: a refused name or field
would otherwise surface only when the run reaches that variant, an hour in."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from modelpress.compress.errors import CompressionError

# Loaded by path under its own name: Python 3.14 has a standard `compression` package.
_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "compression.py"
_SPEC = importlib.util.spec_from_file_location("compression_benchmark", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
compression = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(compression)


def test_every_benchmark_variant_parses() -> None:
    compression.check_variants(compression.VARIANTS)


def test_a_refused_variant_fails_the_check() -> None:
    too_long = {"name": "a-name-longer-than-twenty", "quantize": compression.GPTQ_W4}
    with pytest.raises(
        CompressionError, match=r"variant 'a-name-longer-than-twenty': .*at most 20 characters"
    ):
        compression.check_variants([too_long])


def test_the_rows_judged_by_the_targets_are_variants() -> None:
    names = {v["name"] for v in compression.VARIANTS}
    assert compression.CHAIN in names and compression.TUNED_W4 in names


def test_an_unknown_only_name_is_refused_before_any_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        compression.main(["--only", "no-such-variant"])
    assert exit_info.value.code == 2
    assert "no variant named no-such-variant" in capsys.readouterr().err


def test_the_readme_counts_the_variants_there_are() -> None:
    readme = (_PATH.parents[1] / "README.md").read_text()
    counted = re.search(r"benchmarks/compression\.py .*?(\d+) variants", readme)
    assert counted, "README.md no longer says how many variants benchmarks/compression.py runs"
    assert int(counted.group(1)) == len(compression.VARIANTS)
