"""Two writers on one artifact, a collector during a slow publish, uploads left
unfinished: whatever the interleaving, the committed artifact verifies byte for
byte, every writer returns it, and nothing is corrupted (file:// and S3)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.storage.conftest import blob_of

from modelpress.storage import fetch, gc, open_store, publish, read_manifest
from modelpress.storage.artifacts import Lease, commit, stage
from modelpress.storage.errors import ArtifactConflictError
from modelpress.storage.s3 import S3Store

# Same file names, different bytes: what two Jobs computing one key on different
# hardware may produce.
WRITERS = {
    "a": {"config.json": b'{"writer": "a"}', "model.safetensors": b"A" * 5000},
    "b": {"config.json": b'{"writer": "b"}', "model.safetensors": b"B" * 7000},
}
STEPS = [("a", "stage"), ("a", "commit"), ("b", "stage"), ("b", "commit")]


def _orders() -> list[list[tuple[str, str]]]:
    """Every interleaving in which each writer stages before it commits."""
    found = []
    for order in itertools.permutations(STEPS):
        if all(order.index((w, "stage")) < order.index((w, "commit")) for w in WRITERS):
            found.append(list(order))
    return found


@pytest.mark.parametrize("order", _orders(), ids=lambda o: "-".join(w + s[0] for w, s in o))
def test_two_writers_at_every_interleaving_commit_one_whole_artifact(
    store_uri: str, tmp_path: Path, write_tree: Any, order: list[tuple[str, str]]
) -> None:
    uri = store_uri + "artifacts/raced/"
    store = open_store(uri)
    dirs = {w: write_tree(tmp_path / w, files) for w, files in WRITERS.items()}
    staged: dict[str, Any] = {}
    returned: dict[str, Any] = {}
    for writer, step in order:
        if step == "stage":
            staged[writer] = stage(store, dirs[writer], {"writer": writer})
        else:
            returned[writer] = commit(store, staged[writer])
    winner = next(w for w, s in order if s == "commit")
    committed = read_manifest(uri)
    assert committed is not None and committed.metadata == {"writer": winner}
    assert returned["a"] == returned["b"] == committed, "the loser adopts the winner"
    fetch(uri, tmp_path / "out")
    for name, data in WRITERS[winner].items():
        assert (tmp_path / "out" / name).read_bytes() == data


def test_two_writers_at_once_commit_one_whole_artifact(
    store_uri: str, tmp_path: Path, write_tree: Any
) -> None:
    uri = store_uri + "artifacts/concurrent/"
    dirs = {w: write_tree(tmp_path / w, files) for w, files in WRITERS.items()}
    start = threading.Barrier(2)
    results: dict[str, Any] = {}

    def run(writer: str) -> None:
        start.wait()
        results[writer] = publish(uri, dirs[writer], {"writer": writer})

    threads = [threading.Thread(target=run, args=(w,)) for w in WRITERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["a"] == results["b"] == read_manifest(uri)
    winner = results["a"].metadata["writer"]
    fetch(uri, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (
        WRITERS[winner]["model.safetensors"]
    )


def test_a_blob_gone_before_the_commit_is_never_promised(
    store_uri: str, tmp_path: Path, write_tree: Any
) -> None:
    uri = store_uri + "artifacts/vanished/"
    store = open_store(uri)
    staged = stage(store, write_tree(tmp_path / "m", WRITERS["a"]))
    store.delete([blob_of(WRITERS["a"]["model.safetensors"])])  # a collector, a crash
    with pytest.raises(ArtifactConflictError, match="vanished before the commit"):
        commit(store, staged)
    assert read_manifest(uri) is None
    publish(uri, write_tree(tmp_path / "m2", WRITERS["a"]))  # a retry completes it
    fetch(uri, tmp_path / "out")


def test_gc_during_a_slow_publish_takes_nothing_from_it(
    store_uri: str, tmp_path: Path, write_tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file takes longer than gc's threshold to upload; the lease keeps the prefix
    fresh, so a collector running the whole time removes nothing of it. (Thresholds are
    seconds here, hours in use: S3 times objects to the second.)"""
    monkeypatch.setattr(Lease, "REFRESH_SECONDS", 0.2)
    store = open_store(store_uri + "artifacts/slow/")
    original = type(store).upload_file

    def slow(self: Any, local: Path, key: str, on_bytes: Any = None) -> Any:
        time.sleep(2.0)
        return original(self, local, key, on_bytes)

    monkeypatch.setattr(type(store), "upload_file", slow)
    done = threading.Event()
    removed: list[str] = []

    def collect() -> None:
        while not done.is_set():
            report = gc(store_uri, timedelta(seconds=1.5))
            removed.extend(prefix.uri for prefix in report.removed)
            time.sleep(0.2)

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        files = {f"shard-{i}.safetensors": bytes([i]) * 3000 for i in range(2)}
        publish(store_uri + "artifacts/slow/", write_tree(tmp_path / "m", files))
    finally:
        done.set()
        collector.join()
    assert removed == []
    fetch(store_uri + "artifacts/slow/", tmp_path / "out")
    assert ".lease" not in {info.key for info in store.list()}, "released after the commit"


def test_gc_removes_a_losers_blobs_and_nothing_listed(
    store_uri: str, tmp_path: Path, write_tree: Any
) -> None:
    uri = store_uri + "artifacts/raced/"
    store = open_store(uri)
    staged = {w: stage(store, write_tree(tmp_path / w, f)) for w, f in WRITERS.items()}
    commit(store, staged["a"])
    commit(store, staged["b"])  # adopts a's; b's blobs are listed nowhere
    later = datetime.now(UTC) + timedelta(hours=25)
    report = gc(store_uri, timedelta(hours=24), now=later)
    assert [p.uri for p in report.unlisted] == [uri] and report.unlisted[0].objects == 2
    keys = {info.key for info in store.list()}
    assert keys == {"manifest.json", *(blob_of(d) for d in WRITERS["a"].values())}
    fetch(uri, tmp_path / "out")


def test_gc_aborts_multipart_uploads_left_unfinished(s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}/store/")
    assert isinstance(store, S3Store)
    started = store.client.create_multipart_upload(
        Bucket=s3_bucket, Key="store/artifacts/k/blobs/x"
    )
    later = datetime.now(UTC) + timedelta(hours=25)
    assert (
        gc(f"s3://{s3_bucket}/store/", timedelta(hours=24), dry_run=True, now=later).aborted_uploads
        == 1
    )
    report = gc(f"s3://{s3_bucket}/store/", timedelta(hours=24), now=later)
    assert report.aborted_uploads == 1
    uploads = store.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert started["UploadId"] not in [u["UploadId"] for u in uploads]


SLOW_FETCH = """
import sys, time
from modelpress.storage.local import FileStore
original = FileStore.upload_file
def slow(self, local, key, on_bytes=None):
    print("uploading", flush=True)
    time.sleep(30)
    return original(self, local, key, on_bytes)
FileStore.upload_file = slow
from modelpress.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_stops_a_publish_at_once_and_nothing_is_committed(
    tmp_path: Path, write_tree: Any
) -> None:
    """A Job's process is PID 1 in its container: it must act on SIGTERM (it would
    otherwise run on through the grace period), and must not commit after it."""
    import json
    import signal
    import subprocess
    import sys

    source = write_tree(tmp_path / "model", {"config.json": b"{}", "w.safetensors": b"w" * 100})
    store = (tmp_path / "store").as_uri() + "/"
    command = [sys.executable, "-c", SLOW_FETCH, "fetch",
               "--source", json.dumps({"uri": source.as_uri() + "/"}), "--store", store]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "uploading"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=10)
    assert code == 143 and time.monotonic() - started < 5
    assert "terminated (SIGTERM)" in (process.stderr.read() if process.stderr else "")
    found = [info.key for info in open_store(store).list()]
    assert not [key for key in found if key.endswith("manifest.json")], found
    assert not [key for key in found if key.endswith(".lease")], "the lease is released"
