"""The operator's store cache has a ceiling: expired entries and, past the limit, the
least recently used go, so memory does not grow with every model ever seen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelpress.storage import publish
from modelpress.storeview import StoreReader


@pytest.fixture
def artifacts(tmp_path: Path) -> list[str]:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"\0" * 64)
    uris = []
    for index in range(6):
        uri = f"file://{tmp_path}/store/artifacts/a{index}/"
        publish(uri, staging, {"weightsBytes": 64, "modelConfig": {"index": index}})
        uris.append(uri)
    return uris


def test_past_the_ceiling_the_least_recently_used_go(artifacts: list[str]) -> None:
    reader = StoreReader(cache_seconds=600, max_entries=3)
    for uri in artifacts[:3]:
        assert reader.artifact(uri, None) is not None
    reader.artifact(artifacts[0], None)  # used again: the most recent now
    for uri in artifacts[3:5]:
        reader.artifact(uri, None)
    assert len(reader) == 3
    kept = {key[1] for key in reader._cache}
    assert kept == {artifacts[0], artifacts[3], artifacts[4]}


def test_expired_entries_are_dropped_not_kept(artifacts: list[str], monkeypatch) -> None:
    import modelpress.storeview as storeview

    clock = [1000.0]
    monkeypatch.setattr(storeview.time, "monotonic", lambda: clock[0])
    reader = StoreReader(cache_seconds=10, max_entries=100)
    for uri in artifacts[:4]:
        reader.artifact(uri, None)
    clock[0] += 11
    reader.artifact(artifacts[4], None)
    assert len(reader) == 1, "what expired went when something new came"


def test_a_cached_artifact_is_the_one_read(artifacts: list[str]) -> None:
    reader = StoreReader(cache_seconds=600, max_entries=2)
    first = reader.artifact(artifacts[0], None)
    assert first is not None and json.dumps(first.config) == '{"index": 0}'
    assert reader.artifact(artifacts[0], None) is first


def test_artifacts_with_the_same_config_share_one_copy(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"\0" * 64)
    config = {"hidden_size": 576, "num_hidden_layers": 30}
    uris = [f"file://{tmp_path}/store/artifacts/s{index}/" for index in range(3)]
    for index, uri in enumerate(uris):
        publish(uri, staging, {"weightsBytes": 64 + index, "modelConfig": dict(config)})
    reader = StoreReader(cache_seconds=600)
    found = [reader.artifact(uri, None) for uri in uris]
    assert all(a is not None and a.config == config for a in found)
    assert found[0].config is found[1].config is found[2].config
    assert found[2].metadata.model_config_ is found[0].config
