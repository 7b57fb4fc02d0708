"""Credentials: Secret-mounted files, explicit objects, the environment; secrets never shown."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from modelpress.storage import Credentials, CredentialsError
from modelpress.storage.credentials import resolve_credentials


def _mount(directory: Path, values: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in values.items():
        (directory / key).write_text(value)
    return directory


def test_from_directory_reads_secret_files(tmp_path: Path) -> None:
    mounted = _mount(
        tmp_path / "secret",
        {
            "AWS_ACCESS_KEY_ID": "AKIATEST\n",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t/value\n",
            "AWS_ENDPOINT_URL": "http://minio:9000",
            "AWS_REGION": "eu-west-1",
            "..data": "kubelet bookkeeping is ignored",
        },
    )
    credentials = Credentials.from_directory(mounted)
    assert credentials == Credentials(
        "AKIATEST", "s3cr3t/value", None, "http://minio:9000", "eu-west-1"
    )
    assert "s3cr3t" not in repr(credentials)


def test_directory_missing_or_incomplete_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="does not exist"):
        Credentials.from_directory(tmp_path / "absent")
    partial = _mount(tmp_path / "partial", {"AWS_ACCESS_KEY_ID": "AKIATEST"})
    with pytest.raises(CredentialsError, match="AWS_SECRET_ACCESS_KEY is missing"):
        Credentials.from_directory(partial)


def test_endpoint_with_embedded_user_is_refused() -> None:
    with pytest.raises(CredentialsError) as caught:
        Credentials(endpoint_url="http://user:pw@minio:9000")
    assert "pw" not in str(caught.value)


def test_from_secret_data_decodes_base64() -> None:
    data = {
        "AWS_ACCESS_KEY_ID": base64.b64encode(b"AKIATEST").decode(),
        "AWS_SECRET_ACCESS_KEY": base64.b64encode(b"sec").decode(),
    }
    assert Credentials.from_secret_data(data) == Credentials("AKIATEST", "sec")
    with pytest.raises(CredentialsError, match="not valid base64"):
        Credentials.from_secret_data({"AWS_ACCESS_KEY_ID": "%%%"})
    # the Jobs mount the Secret as files and ignore other keys: the operator does the same
    extra = {**data, "AWS_DEFAULT_REGION": base64.b64encode(b"eu-west-1").decode(), "note": ""}
    assert Credentials.from_secret_data(extra) == Credentials("AKIATEST", "sec", region="eu-west-1")


def test_resolution_order(tmp_path: Path) -> None:
    explicit = Credentials("EXPLICIT", "e")
    mounted = _mount(tmp_path / "m", {"AWS_ACCESS_KEY_ID": "MOUNTED", "AWS_SECRET_ACCESS_KEY": "m"})
    env = {
        "MODELPRESS_STORAGE_CREDENTIALS_DIR": str(mounted),
        "AWS_ACCESS_KEY_ID": "ENV",
        "AWS_SECRET_ACCESS_KEY": "v",
        "AWS_ENDPOINT_URL": "http://from-env:9000",
        "AWS_DEFAULT_REGION": "ap-south-1",
    }
    assert resolve_credentials(explicit, env) is explicit
    from_dir = resolve_credentials(None, env)
    assert from_dir.access_key_id == "MOUNTED"
    assert from_dir.endpoint_url == "http://from-env:9000"  # a Secret without endpoint keeps env's
    assert from_dir.region == "ap-south-1"
    del env["MODELPRESS_STORAGE_CREDENTIALS_DIR"]
    assert resolve_credentials(None, env).access_key_id == "ENV"
    assert resolve_credentials(None, {}) == Credentials()
