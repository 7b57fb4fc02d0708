"""s3:// specifics against moto: bad buckets, bad credentials, dead endpoints, multipart,
credentials from a mounted Secret, and a server that dies in the middle of a publish."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.storage.conftest import blob_of

from modelpress.storage import (
    AccessDeniedError,
    ArtifactNotFoundError,
    BucketNotFoundError,
    Credentials,
    StoreUnavailableError,
    fetch,
    open_store,
    publish,
    read_manifest,
)
from modelpress.storage.s3 import S3Store


@pytest.fixture
def small_model(tmp_path: Path, write_tree: Any) -> Path:
    return write_tree(tmp_path / "model", {"config.json": b"{}", "w.safetensors": os.urandom(4096)})


def test_missing_bucket_is_named(s3_bucket: str, small_model: Path) -> None:
    with pytest.raises(BucketNotFoundError) as caught:
        read_manifest("s3://no-such-bucket-here/models/x/")
    assert "no-such-bucket-here" in str(caught.value)
    with pytest.raises(BucketNotFoundError):
        publish("s3://no-such-bucket-here/models/x/", small_model)


@pytest.fixture
def moto_auth(moto_server: str) -> Iterator[None]:
    """Make moto check signatures and access keys (it accepts anything by default)."""

    def set_count(value: str) -> None:
        request = urllib.request.Request(
            f"{moto_server}/moto-api/reset-auth",
            data=value.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=5).read()

    set_count("0")
    try:
        yield
    finally:
        set_count("inf")


def test_wrong_credentials_are_reported_without_the_secret(
    s3_bucket: str, moto_server: str, moto_auth: None
) -> None:
    wrong = Credentials("AKIAWRONGKEY", "wrong-secret-value", endpoint_url=moto_server)
    with pytest.raises(AccessDeniedError) as caught:
        read_manifest(f"s3://{s3_bucket}/models/x/", credentials=wrong)
    message = str(caught.value)
    assert f"s3://{s3_bucket}/models/x/" in message and "credentials" in message
    assert "wrong-secret-value" not in message


def test_unreachable_endpoint_is_reported(
    monkeypatch: pytest.MonkeyPatch, s3_keys: tuple[str, str]
) -> None:
    monkeypatch.setenv("MODELPRESS_S3_MAX_ATTEMPTS", "1")
    dead = Credentials(*s3_keys, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:9.*s3://bucket/models/x/"):
        read_manifest("s3://bucket/models/x/", credentials=dead)


def test_credentials_from_a_mounted_secret(
    moto_server: str,
    s3_bucket: str,
    s3_keys: tuple[str, str],
    small_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    for key, value in {
        "AWS_ACCESS_KEY_ID": s3_keys[0],
        "AWS_SECRET_ACCESS_KEY": s3_keys[1],
        "AWS_ENDPOINT_URL": moto_server,
    }.items():
        (secret / key).write_text(value + "\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("MODELPRESS_STORAGE_CREDENTIALS_DIR", str(secret))
    store = open_store(f"s3://{s3_bucket}/")
    assert isinstance(store, S3Store) and store.credentials.access_key_id == s3_keys[0]
    publish(f"s3://{s3_bucket}/models/m/", small_model)
    assert read_manifest(f"s3://{s3_bucket}/models/m/") is not None


def test_explicit_credentials_override_the_environment(
    moto_server: str,
    s3_bucket: str,
    s3_keys: tuple[str, str],
    small_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # would fail if used
    explicit = Credentials(*s3_keys, endpoint_url=moto_server)
    publish(f"s3://{s3_bucket}/models/e/", small_model, credentials=explicit)
    assert read_manifest(f"s3://{s3_bucket}/models/e/", credentials=explicit) is not None


def test_multipart_transfers_hash_every_part(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_tree: Any
) -> None:
    monkeypatch.setenv("MODELPRESS_S3_CHUNK_MIB", "5")  # S3's smallest part size
    data = os.urandom(11 * 1024 * 1024 + 17)
    model = write_tree(tmp_path / "big", {"w.safetensors": data})
    uri = f"s3://{s3_bucket}/models/big/"
    manifest = publish(uri, model)
    import hashlib

    assert manifest.files[0].sha256 == hashlib.sha256(data).hexdigest()
    key = f"models/big/{blob_of(data)}"
    head = open_store(uri).client.head_object(Bucket=s3_bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-3")  # really uploaded in three parts
    fetch(uri, tmp_path / "out")
    assert (tmp_path / "out" / "w.safetensors").read_bytes() == data


def test_server_dies_mid_upload_then_a_retry_completes(
    s3_proxy: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_tree: Any
) -> None:
    monkeypatch.setenv("MODELPRESS_S3_CHUNK_MIB", "5")
    files = {
        "a-config.json": b'{"a": 1}',
        "b-weights.safetensors": os.urandom(12 * 1024 * 1024),
        "c-tokenizer.json": b"{}",
    }
    model = write_tree(tmp_path / "model", files)
    uri = f"s3://{s3_bucket}/models/crash/"
    cut = {"done": False}
    original = S3Store.upload_file

    def upload(self: S3Store, local: Path, key: str, on_bytes: Any = None) -> Any:
        def forward(count: int) -> None:
            on_bytes(count)
            if key == blob_of(files["b-weights.safetensors"]) and not cut["done"]:
                cut["done"] = True
                s3_proxy.stop()  # the server vanishes with the first part in flight

        return original(self, local, key, forward)

    monkeypatch.setattr(S3Store, "upload_file", upload)
    with pytest.raises(StoreUnavailableError, match="cannot reach"):
        publish(uri, model)
    assert cut["done"]

    s3_proxy.start()  # the server is back, with what it had stored
    assert read_manifest(uri) is None
    with pytest.raises(ArtifactNotFoundError):
        fetch(uri, tmp_path / "early")
    listed = {info.key for info in open_store(uri).list()}
    assert "manifest.json" not in listed and blob_of(files["c-tokenizer.json"]) not in listed

    manifest = publish(uri, model)
    assert [entry.path for entry in manifest.files] == sorted(files)
    fetch(uri, tmp_path / "out")
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    stored = json.loads(open_store(uri).get_bytes("manifest.json") or b"{}")
    assert stored["totalBytes"] == sum(len(data) for data in files.values())
