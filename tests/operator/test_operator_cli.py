"""`modelpress operator`: mistakes are one-line usage errors before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelpress.cli import main


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["operator", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--config", "--namespace", "--all-namespaces", "--liveness", "--standalone"):
        assert option in out


def test_a_bad_config_is_a_usage_error_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("workerLimit: 0\nimags: {}\n")
    assert main(["operator", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("modelpress operator: ") and len(err.splitlines()) == 1
    assert "workerLimit" in err and "imags: unknown setting" in err


def test_a_missing_config_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["operator", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read configuration" in capsys.readouterr().err


def test_the_liveness_endpoint_must_be_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["operator", "--liveness", "0.0.0.0:8080"]) == 2
    assert "must be a URL" in capsys.readouterr().err


def test_namespaces_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["operator", "--namespace", "ml", "--all-namespaces"])
    assert exit_info.value.code == 2
