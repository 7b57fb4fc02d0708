"""The final table and the progress lines, as a person reads them."""

from __future__ import annotations

import io

from modelpress.api.status import CompressedModelStatus
from modelpress.local.console import Console
from modelpress.local.report import plain_table, render, variant_rows

STATUS = CompressedModelStatus.model_validate(
    {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok"},
            {"type": "Serving", "status": "True", "reason": "Available", "message": "w4 serves"},
            {"type": "Reconciling", "status": "False", "reason": "Ready", "message": "ok"},
            {"type": "Stalled", "status": "False", "reason": "Ready", "message": "ok"},
        ],
        "source": {"id": "file:///m/", "uri": "file:///s/models/b/", "bytes": 272_585_278},
        "serving": {"variant": "w4"},
        "variants": [
            {
                "name": "w4",
                "artifactUri": "file:///s/artifacts/k1/",
                "bytes": 116_707_768,
                "sizeRatio": 0.4282,
                "metrics": {
                    "perplexity": 24.5,
                    "basePerplexity": 21.8,
                    "perplexityIncrease": 0.1239,
                    "tasks": [
                        {
                            "name": "qa",
                            "accuracy": 0.5,
                            "baseAccuracy": 0.625,
                            "recovery": 0.8,
                            "questions": 8,
                        },
                        {
                            "name": "none-right",
                            "accuracy": 0.0,
                            "baseAccuracy": 0.0,
                            "questions": 8,
                        },
                    ],
                    "chat": {
                        "klDivergence": 0.2912,
                        "klDivergenceP99": 2.08,
                        "agreement": 0.71,
                        "prompts": 24,
                        "tokens": 1100,
                    },
                },
                "footprint": {"totalBytes": 3_650_000_000},
                "conditions": [
                    {"type": "QualityGate", "status": "True", "reason": "Passed", "message": ""}
                ],
            },
            {
                "name": "broken",
                "conditions": [
                    {"type": "Compressed", "status": "False", "reason": "JobFailed", "message": "x"}
                ],
            },
        ],
    }
)


def test_rows_carry_the_numbers_of_the_status() -> None:
    w4, broken = variant_rows(STATUS, {"w4": "W4A16 rtn g64"}, ["w4"], [], ["broken"])
    assert w4.cells() == (
        "w4 *", "W4A16 rtn g64", "111.30 MiB", "0.43x", "24.500", "+12.4%",
        "qa 80%, none-right —", "0.291", "3.40 GiB", "pass", "reused",
    )  # fmt: skip
    assert broken.cells()[2:] == ("—", "—", "—", "—", "—", "—", "—", "—", "failed")
    assert broken.artifact == "—"


def test_plain_table_is_aligned_and_lists_artifacts() -> None:
    rows = variant_rows(STATUS, {}, [], ["w4"], [])
    table = plain_table(rows).splitlines()
    assert table[0].startswith("variant") and set(table[1]) <= {"-", " "}
    starts = [table[0].index(column) for column in ("recipe", "bytes", "gate", "run")]
    for line in table[1:]:
        assert all(line[start - 2 : start] == "  " for start in starts), line
    out = io.StringIO()
    render(STATUS, {}, [], ["w4"], [], rich=False, stream=out)
    text = out.getvalue()
    assert "  w4      file:///s/artifacts/k1/" in text
    assert "perplexity 21.800: file:///s/models/b/" in text
    assert "✓ Serving: w4 serves" in text
    assert "Reconciling" not in text and "Stalled" not in text, "kstatus mirrors: no ✗ for all well"


def test_plain_progress_has_start_heartbeat_and_end() -> None:
    out = io.StringIO()
    console = Console(out, rich=False, heartbeat=0.0)
    with console.step("compress w4") as step:
        step.line("layer 3/30")
    step.line("after the end: ignored")
    lines = out.getvalue().splitlines()
    assert lines[0] == "→ compress w4 …"
    assert lines[1].startswith("  … compress w4: 0s: layer 3/30")
    assert lines[2].startswith("✓ compress w4 (")
    assert len(lines) == 3


def test_a_failing_step_is_marked_and_the_error_propagates() -> None:
    out = io.StringIO()
    console = Console(out, rich=False)
    try:
        with console.step("start vLLM"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert out.getvalue().splitlines()[-1].startswith("✗ start vLLM (")


def test_rich_progress_ends_with_a_lasting_line() -> None:
    out = io.StringIO()
    console = Console(out, rich=True)
    with console.step("fetch") as step:
        step.line("hash model.safetensors")
    assert "✓ fetch" in out.getvalue()
    assert console.live is None


def test_plain_progress_beats_while_the_work_is_silent() -> None:
    import time

    out = io.StringIO()
    console = Console(out, rich=False, heartbeat=0.2)
    with console.step("evaluate"):
        time.sleep(0.7)
    beats = [line for line in out.getvalue().splitlines() if line.startswith("  … evaluate")]
    assert beats and "working, no output yet" in beats[0]
