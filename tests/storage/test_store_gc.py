"""gc removes only uncommitted prefixes older than the threshold, on both store kinds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelpress.storage import gc, open_store, publish, read_json, read_manifest, write_json


def test_gc_removes_only_old_staging_prefixes(
    store_uri: str, tmp_path: Path, write_tree: Any
) -> None:
    model = write_tree(tmp_path / "m", {"w.safetensors": b"weights", "config.json": b"{}"})
    publish(store_uri + "artifacts/committed/", model)
    store = open_store(store_uri)
    store.put_bytes("artifacts/abandoned/w.safetensors", b"half")
    store.put_bytes("artifacts/abandoned/sub/x.json", b"{}")
    store.put_bytes("models/abandoned-base/w.safetensors", b"half")
    write_json(store_uri + "sources/s.json", {"id": "x"})
    later = datetime.now(UTC) + timedelta(hours=25)

    recent = gc(store_uri, timedelta(hours=24))
    assert recent.removed == [] and len(recent.kept) == 2 and recent.committed == 1

    dry = gc(store_uri, timedelta(hours=24), dry_run=True, now=later)
    assert sorted(prefix.uri for prefix in dry.removed) == [
        store_uri + "artifacts/abandoned/",
        store_uri + "models/abandoned-base/",
    ]
    assert store.get_bytes("artifacts/abandoned/w.safetensors") == b"half"

    report = gc(store_uri, timedelta(hours=24), now=later)
    assert len(report.removed) == 2 and report.removed_bytes == 4 + 2 + 4
    assert [info.key for info in store.list("artifacts/abandoned/")] == []
    assert [info.key for info in store.list("models/")] == []
    assert read_manifest(store_uri + "artifacts/committed/") is not None
    assert read_json(store_uri + "sources/s.json") == {"id": "x"}
    assert report.to_dict()["removed"][0]["newest"]  # JSON-ready


def test_gc_collects_checkpoints_only_once_their_artifact_is_committed(
    store_uri: str, tmp_path: Path, write_tree: Any
) -> None:
    store = open_store(store_uri)
    store.put_bytes("checkpoints/done/step-100/student.pt", b"state")
    store.put_bytes("checkpoints/training/step-100/student.pt", b"state")
    publish(store_uri + "artifacts/done/", write_tree(tmp_path / "m", {"w.safetensors": b"w"}))
    later = datetime.now(UTC) + timedelta(hours=25)
    report = gc(store_uri, timedelta(hours=24), now=later)
    assert [p.uri for p in report.checkpoints] == [store_uri + "checkpoints/done/"]
    keys = {info.key for info in store.list("checkpoints/")}
    assert keys == {"checkpoints/training/step-100/student.pt"}, "a Job may still resume these"
