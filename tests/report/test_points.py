"""What the report shows: points read from a model's status and from the benchmark, the
Pareto frontier, and the summary in words."""

from __future__ import annotations

import pytest
from tests.report.pictures import MEASURED, benchmark, model_document

from modelpress.report.points import (
    Point,
    ReportError,
    from_benchmark,
    from_document,
    on_frontier,
    read,
    summary,
)


def test_the_frontier_keeps_what_nothing_smaller_beats() -> None:
    points = [
        Point("base", 1000, 0.0),
        Point("w8", 600, 0.01),
        Point("w4", 400, 0.10),
        Point("w4-bad", 400, 0.30),  # as small as w4, worse
        Point("w6-bad", 500, 0.20),  # larger than w4 and worse
        Point("tiny", 200, 0.90),
        Point("unmeasured", 100, None),
    ]
    assert on_frontier(points) == {"base", "w8", "w4", "tiny"}


def test_equal_points_are_both_on_the_frontier() -> None:
    assert on_frontier([Point("a", 10, 0.1), Point("b", 10, 0.1)]) == {"a", "b"}


def test_a_served_model_reads_with_its_gate_recipes_and_served_variant() -> None:
    picture = from_document(model_document())
    names = [p.name for p in picture.points]
    assert names == ["w4", "w4-rtn", "w8", "base"], "sorted by size"
    by_name = {p.name: p for p in picture.points}
    assert by_name["base"].base and by_name["base"].perplexity_increase == 0.0
    assert by_name["w4"].served and not by_name["w8"].served
    assert by_name["w4"].passed is True and by_name["w4-rtn"].passed is False
    assert by_name["w4"].recipe == "W4A16 gptq g64"
    assert by_name["w4"].bytes == MEASURED["w4"][0]
    assert {p.name for p in picture.points if p.frontier} == {"w4", "w8", "base"}
    assert picture.gate == 0.1
    assert picture.evaluated_on == "s3://data/eval.txt"
    assert picture.title == "ml/tiny"


def test_the_summary_says_the_frontier_the_gate_and_what_serves() -> None:
    text = summary(from_document(model_document()))
    assert "quality measured on s3://data/eval.txt" in text
    assert "* on the frontier (nothing smaller is better): w4 → w8 → base" in text
    assert "gate: perplexity at most +10% over the base model" in text
    assert "S served: w4 (" in text and "+6.0% perplexity" in text
    assert "w4-rtn" in text and "fail" in text


def test_the_benchmark_result_reads_with_weights_bytes_and_an_optional_gate() -> None:
    document = benchmark()
    picture = from_benchmark(document, gate=0.10)
    rows = {row["name"]: row for row in document["rows"]}
    by_name = {p.name: p for p in picture.points}
    assert by_name["base"].bytes == document["baseBytes"]
    for name, row in rows.items():
        assert by_name[name].bytes == row["bytes"]
        assert by_name[name].perplexity_increase == row["deltaPerplexity"]
        assert by_name[name].passed is (row["deltaPerplexity"] <= 0.10)
    assert by_name["w4a16-gptq"].recipe == "W4A16 gptq g64"
    assert picture.evaluated_on.endswith("examples/data/eval.txt")
    assert read(document).gate is None


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ([1, 2], "expected a mapping"),
        ({"kind": "Deployment"}, "expected a CompressedModel"),
        ({"rows": "x", "baseBytes": 1}, "not a compression benchmark result"),
        ({**model_document(), "status": {}}, "has no status yet"),
        ({**model_document(), "spec": {"source": 3}}, "ml/tiny cannot be read"),
    ],
)
def test_what_cannot_be_read_says_what_was_expected(document, words) -> None:
    with pytest.raises(ReportError, match=words):
        read(document)


def test_a_variant_not_built_yet_is_left_out_and_said() -> None:
    document = model_document()
    del document["status"]["variants"][0]["bytes"]
    picture = from_document(document)
    assert "w8" not in [p.name for p in picture.points]
    assert "not built yet: w8" in summary(picture)
