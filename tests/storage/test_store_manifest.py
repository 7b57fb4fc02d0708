"""The manifest model: camelCase JSON, and refusal of anything that could escape a directory."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from modelpress.storage import Manifest, ManifestFile

SHA = "a" * 64


def test_json_uses_camel_case_and_round_trips() -> None:
    manifest = Manifest.build(
        [
            ManifestFile(path="b.json", bytes=2, sha256=SHA),
            ManifestFile(path="a/x", bytes=3, sha256=SHA),
        ],
        {"scheme": "W4A16"},
    )
    data = json.loads(manifest.to_json_bytes())
    assert set(data) == {"files", "totalBytes", "createdAt", "metadata"}
    assert data["totalBytes"] == 5
    assert [entry["path"] for entry in data["files"]] == ["a/x", "b.json"]
    assert Manifest.from_json_bytes(manifest.to_json_bytes()) == manifest


@pytest.mark.parametrize(
    "path", ["../evil", "/abs", "a/../../b", "a//b", "./a", "a\\b", "", "manifest.json"]
)
def test_unsafe_paths_are_refused(path: str) -> None:
    document = {
        "files": [{"path": path, "bytes": 1, "sha256": SHA}],
        "totalBytes": 1,
        "createdAt": "2024-01-01T00:00:00Z",
    }
    with pytest.raises(ValidationError):
        Manifest.from_json_bytes(json.dumps(document).encode())


def test_inconsistent_totals_and_duplicates_are_refused() -> None:
    entry = {"path": "a", "bytes": 1, "sha256": SHA}
    base = {"createdAt": "2024-01-01T00:00:00Z", "metadata": {}}
    with pytest.raises(ValidationError, match="totalBytes"):
        Manifest.model_validate({**base, "files": [entry], "totalBytes": 2})
    with pytest.raises(ValidationError, match="more than once"):
        Manifest.model_validate({**base, "files": [entry, entry], "totalBytes": 2})
    with pytest.raises(ValidationError, match="64 lowercase hex"):
        Manifest.model_validate({**base, "files": [{**entry, "sha256": "XYZ"}], "totalBytes": 1})
