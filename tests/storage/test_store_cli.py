"""`modelpress pull`, `gc` and `fetch` as the Jobs and init containers run them."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.storage.conftest import stored_key

from modelpress.cli import UsageError, main
from modelpress.cli.storage import parse_duration
from modelpress.storage import open_store, publish, read_manifest


@pytest.fixture
def published(store_uri: str, tmp_path: Path, write_tree: Any) -> str:
    model = write_tree(
        tmp_path / "model", {"config.json": b"{}", "model.safetensors": os.urandom(50_000)}
    )
    uri = store_uri + "artifacts/v1/"
    publish(uri, model)
    return uri


def test_pull_downloads_and_verifies(
    published: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull", published, str(tmp_path / "dest")]) == 0
    assert (tmp_path / "dest" / "config.json").read_bytes() == b"{}"
    err = capsys.readouterr().err
    assert "pulled 2 files" in err and "download" in err


def test_pull_names_the_corrupt_file(
    published: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_store(published).put_bytes(stored_key(published, "model.safetensors"), b"not the weights")
    assert main(["pull", "--quiet", published, str(tmp_path / "dest")]) == 1
    err = capsys.readouterr().err
    assert "modelpress pull: checksum mismatch for model.safetensors" in err


def test_pull_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", "s3://key:secret@bucket/a/", str(tmp_path)]) == 2
    assert main(["pull", (tmp_path / "nothing").as_uri(), str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "embeds credentials" in err and "secret" not in err.replace("Secret", "")
    assert "no artifact at" in err


def test_gc_command(store_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    open_store(store_uri).put_bytes("artifacts/stale/w.bin", b"x")
    assert main(["gc", "--store", store_uri, "--older-than", "0s", "--dry-run"]) == 0
    assert "would remove " + store_uri + "artifacts/stale/" in capsys.readouterr().out
    assert main(["gc", "--store", store_uri, "--older-than", "0s", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [prefix["uri"] for prefix in report["removed"]] == [store_uri + "artifacts/stale/"]
    assert list(open_store(store_uri).list()) == []
    assert main(["gc", "--store", store_uri, "--older-than", "soon"]) == 2


def test_parse_duration() -> None:
    assert parse_duration("24h") == timedelta(hours=24)
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert parse_duration("90m") == timedelta(minutes=90)
    for bad in ("", "24", "h", "1x", "-1h", "1h 2m"):
        with pytest.raises(UsageError, match="not a duration"):
            parse_duration(bad)


def test_fetch_command_prints_the_record(
    store_uri: str, tmp_path: Path, write_tree: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = write_tree(
        tmp_path / "ckpt",
        {"config.json": b"{}", "model.safetensors": b"w" * 100, "pytorch_model.bin": b"pickle"},
    )
    source = json.dumps({"uri": checkpoint.as_uri()})
    assert main(["fetch", "--quiet", "--source", source, "--store", store_uri]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record) == {"id", "revision", "uri", "key"}
    assert record["uri"] == store_uri + f"models/{record['key']}/"
    manifest = read_manifest(record["uri"])
    assert manifest is not None
    assert [entry.path for entry in manifest.files] == ["config.json", "model.safetensors"]
    assert main(["fetch", "--quiet", "--source", source, "--store", store_uri]) == 0
    assert json.loads(capsys.readouterr().out) == record

    assert main(["fetch", "--source", "{not json", "--store", store_uri]) == 2
    assert main(["fetch", "--source", '{"git": "x"}', "--store", store_uri]) == 2
    assert "source.git" in capsys.readouterr().err


class RepositoryNotFoundError(Exception):
    """Named as huggingface_hub names it."""


@pytest.mark.parametrize(
    ("error", "code"),
    [(RepositoryNotFoundError("404 org/missing"), 2), (ConnectionError("reset by peer"), 1)],
    ids=["missing repository: fail once", "network: retry"],
)
def test_fetch_tells_permanent_errors_from_passing_ones(
    error: Exception, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Exit 2 makes the Job's pod failure policy fail it at once; 1 lets it retry."""
    from modelpress.sources.huggingface import hub_errors

    def failing(*args: object, **kwargs: object) -> None:
        with hub_errors("resolving org/missing", token=None):
            raise error

    monkeypatch.setattr("modelpress.sources.fetch_source", failing)
    source = '{"huggingface": {"repo": "org/missing"}}'
    assert main(["fetch", "--source", source, "--store", tmp_path.as_uri() + "/"]) == code
    if code == 2:
        assert "check spec.source.huggingface.repo" in capsys.readouterr().err
