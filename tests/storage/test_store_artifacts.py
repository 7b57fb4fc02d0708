"""Publish, read, fetch and delete artifacts: the same suite against file:// and s3:// (moto)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.storage.conftest import blob_of, stored_key

from modelpress.storage import (
    ArtifactConflictError,
    ArtifactNotFoundError,
    ChecksumMismatchError,
    InvalidURIError,
    delete_artifact,
    fetch,
    open_store,
    publish,
    read_json,
    read_manifest,
    write_json,
)
from modelpress.storage.base import ObjectStore
from modelpress.storage.local import FileStore
from modelpress.storage.s3 import S3Store

FILES = {
    "config.json": b'{"hidden_size": 8}',
    "model-00001-of-00002.safetensors": os.urandom(300_000),
    "model-00002-of-00002.safetensors": os.urandom(200_000),
    "tokenizer/tokenizer.json": b'{"version": "1.0"}',
    "empty.txt": b"",
}


@pytest.fixture
def model_dir(tmp_path: Path, write_tree: Any) -> Path:
    return write_tree(tmp_path / "model", FILES)


def _count_calls(monkeypatch: pytest.MonkeyPatch, method: str) -> list[str]:
    """Record the key of every `method` call on either store class."""
    calls: list[str] = []
    for cls in (FileStore, S3Store):
        original = getattr(cls, method)

        def counting(
            self: ObjectStore, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            calls.append(args[0] if method == "download_file" else args[1])
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, counting)
    return calls


def test_publish_then_fetch_round_trips(store_uri: str, model_dir: Path, tmp_path: Path) -> None:
    uri = store_uri + "artifacts/k1/"
    manifest = publish(uri, model_dir, {"scheme": "W8A16"})
    assert [entry.path for entry in manifest.files] == sorted(FILES)
    assert manifest.total_bytes == sum(len(data) for data in FILES.values())
    assert manifest.metadata == {"scheme": "W8A16"}
    assert read_manifest(uri) == manifest
    assert read_manifest(uri.rstrip("/")) == manifest  # with or without the trailing slash

    events: list[Any] = []
    fetched = fetch(uri, tmp_path / "out", progress=events.append)
    assert fetched == manifest
    for relative, data in FILES.items():
        assert (tmp_path / "out" / relative).read_bytes() == data
    assert events[-1].finished and events[-1].done_bytes == manifest.total_bytes
    assert not list((tmp_path / "out").rglob("*.modelpress-partial"))


def test_publishing_twice_is_a_no_op(
    store_uri: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = store_uri + "artifacts/k2/"
    first = publish(uri, model_dir, {"run": 1})
    uploads = _count_calls(monkeypatch, "upload_file")
    second = publish(uri, model_dir, {"run": 2})
    assert second == first and second.metadata == {"run": 1}
    assert uploads == []


def test_a_prefix_without_manifest_is_absent(store_uri: str, tmp_path: Path) -> None:
    uri = store_uri + "artifacts/staging/"
    open_store(uri).put_bytes("model.safetensors", b"half-written")
    assert read_manifest(uri) is None
    with pytest.raises(ArtifactNotFoundError, match=r"no artifact at .*staging"):
        fetch(uri, tmp_path / "out")


def test_corrupted_object_fails_the_fetch_naming_the_file(
    store_uri: str, model_dir: Path, tmp_path: Path
) -> None:
    uri = store_uri + "artifacts/k3/"
    publish(uri, model_dir)
    victim = "model-00002-of-00002.safetensors"
    tampered = bytearray(FILES[victim])
    tampered[1000] ^= 0xFF
    open_store(uri).put_bytes(stored_key(uri, victim), bytes(tampered))
    with pytest.raises(ChecksumMismatchError) as caught:
        fetch(uri, tmp_path / "out")
    assert caught.value.path == victim
    assert victim in str(caught.value)
    assert not (tmp_path / "out" / victim).exists()
    assert not list((tmp_path / "out").rglob("*.modelpress-partial"))

    truncated = FILES[victim][:-1]  # caught by size as well
    open_store(uri).put_bytes(stored_key(uri, victim), truncated)
    with pytest.raises(ChecksumMismatchError, match=f"{victim}.*size"):
        fetch(uri, tmp_path / "out")


@contextlib.contextmanager
def _counting_gets(uri: str) -> Iterator[list[str] | None]:
    """Keys of the GetObject requests an s3 store's client sends (None for file stores)."""
    store = open_store(uri)
    if not isinstance(store, S3Store):
        yield None
        return
    keys: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        keys.append(params["Key"])

    store.client.meta.events.register("provide-client-params.s3.GetObject", record)
    try:
        yield keys
    finally:
        store.client.meta.events.unregister("provide-client-params.s3.GetObject", record)


class Evicted(Exception):
    """Stands for the process dying mid-download."""


def test_interrupted_fetch_resumes_without_refetching_verified_files(
    store_uri: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = store_uri + "artifacts/k4/"
    publish(uri, model_dir)
    dest = tmp_path / "out"
    order = sorted(FILES)
    downloads: list[str] = []
    blobs = {blob_of(FILES[name]): name for name in order}
    interrupt_at = {blob_of(FILES[order[2]])}
    for cls in (FileStore, S3Store):
        original = cls.download_file

        def download(
            self: ObjectStore,
            key: str,
            local: Path,
            on_bytes: Any = None,
            _original: Any = original,
        ) -> Any:
            downloads.append(blobs.get(key, key))

            def forward(count: int) -> None:
                if key in interrupt_at:
                    raise Evicted(key)  # after the first bytes of this file reached the disk
                on_bytes(count)

            return _original(self, key, local, forward)

        monkeypatch.setattr(cls, "download_file", download)

    with pytest.raises(Evicted):
        fetch(uri, dest)
    assert downloads == order[:3]
    assert not (dest / order[2]).exists()
    first_mtime = (dest / order[0]).stat().st_mtime_ns
    (dest / order[1]).write_bytes(b"tampered locally")  # present but wrong: must be replaced

    downloads.clear()
    interrupt_at.clear()
    with _counting_gets(uri) as gets:
        fetch(uri, dest)
    assert downloads == order[1:]  # the verified first file was not downloaded again
    if gets is not None:  # s3: not one GET request for it went over the wire either
        assert not [key for key in gets if key.endswith(blob_of(FILES[order[0]]))]
        assert [key for key in gets if key.endswith(blob_of(FILES[order[3]]))]
    assert (dest / order[0]).stat().st_mtime_ns == first_mtime
    for relative, data in FILES.items():
        assert (dest / relative).read_bytes() == data


def test_expected_hash_mismatch_aborts_before_commit(store_uri: str, model_dir: Path) -> None:
    uri = store_uri + "artifacts/k5/"
    with pytest.raises(ChecksumMismatchError, match=r"config\.json"):
        publish(uri, model_dir, expected_sha256={"config.json": "0" * 64})
    assert read_manifest(uri) is None


def test_publish_refuses_bad_input(store_uri: str, model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "manifest.json").write_text("{}")
    with pytest.raises(ArtifactConflictError, match=r"manifest\.json"):
        publish(store_uri + "artifacts/k6/", model_dir)
    with pytest.raises(InvalidURIError, match="root"):
        publish(store_uri.split("/root/")[0] + "/" if "s3" in store_uri else "file:///", model_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="no files"):
        publish(store_uri + "artifacts/k7/", empty)


def test_publish_only_selected_files(store_uri: str, model_dir: Path, tmp_path: Path) -> None:
    uri = store_uri + "artifacts/k8/"
    manifest = publish(uri, model_dir, files=["config.json", "tokenizer/tokenizer.json"])
    assert [entry.path for entry in manifest.files] == ["config.json", "tokenizer/tokenizer.json"]


def test_delete_artifact_hides_it_and_removes_everything(store_uri: str, model_dir: Path) -> None:
    uri = store_uri + "artifacts/k9/"
    publish(uri, model_dir)
    assert delete_artifact(uri) == len(FILES) + 1
    assert read_manifest(uri) is None
    assert list(open_store(uri).list()) == []


def test_json_records(store_uri: str) -> None:
    uri = store_uri + "sources/abc.json"
    assert read_json(uri) is None
    write_json(uri, {"id": "org/name", "revision": "0" * 40})
    assert read_json(uri) == {"id": "org/name", "revision": "0" * 40}
    write_json(uri, {"id": "replaced"})
    assert read_json(uri) == {"id": "replaced"}
    with pytest.raises(InvalidURIError, match="directory"):
        write_json(store_uri + "sources/", {})
