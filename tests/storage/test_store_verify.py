"""`modelpress verify`: every byte of a committed artifact against its manifest, and a
repair that leaves the artifact to be computed again (file:// and S3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.storage.conftest import stored_key

from modelpress.cli import main
from modelpress.storage import fetch, open_store, publish, read_manifest

FILES = {"config.json": b'{"a": 1}', "model.safetensors": b"w" * 4096}


def test_a_sound_artifact_verifies(
    store_uri: str, tmp_path: Path, write_tree: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = store_uri + "artifacts/sound/"
    publish(uri, write_tree(tmp_path / "m", FILES))
    assert main(["verify", uri]) == 0
    assert "2 files, every byte as the manifest lists" in capsys.readouterr().out


def test_a_damaged_blob_is_named_and_repaired(
    store_uri: str, tmp_path: Path, write_tree: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = store_uri + "artifacts/damaged/"
    model = write_tree(tmp_path / "m", FILES)
    first = publish(uri, model)
    key = stored_key(uri, "model.safetensors")
    open_store(uri).put_bytes(key, b"x" * 4096)  # same size, other bytes
    assert main(["verify", uri]) == 1
    out = capsys.readouterr().out
    assert "model.safetensors: 4096 bytes with sha256" in out and "--repair" in out
    assert main(["verify", uri, "--repair"]) == 0
    assert read_manifest(uri) is None, "absent: the next publish computes it again"
    assert key not in {info.key for info in open_store(uri).list()}, "no damaged blob reused"
    again = publish(uri, model)
    assert again.files == first.files
    fetch(uri, tmp_path / "out")


def test_an_unreadable_manifest_is_repaired(
    store_uri: str, tmp_path: Path, write_tree: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = store_uri + "artifacts/garbled/"
    publish(uri, write_tree(tmp_path / "m", FILES))
    open_store(uri).put_bytes("manifest.json", b"{not json")
    assert main(["verify", uri]) == 1
    assert "not a valid manifest" in capsys.readouterr().out
    assert main(["verify", uri, "--repair"]) == 0
    assert read_manifest(uri) is None
