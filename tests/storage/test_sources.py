"""Base-model sources: spec validation, the file policy, the Hub token, and fetching once
per (source, revision) — the Hub replaced by an injected fake, the store real."""

from __future__ import annotations

import hashlib
import logging
import os
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from huggingface_hub.hf_api import BlobLfsInfo, RepoSibling
from tests.storage.conftest import stored_key

from modelpress.api.keys import base_key, source_key
from modelpress.sources import (
    HuggingFaceSource,
    SourceError,
    SourcePolicyError,
    SourceSpecError,
    UriSource,
    fetch_source,
    parse_source_spec,
    read_hf_token,
    record_uri,
    select_files,
)
from modelpress.storage import (
    ChecksumMismatchError,
    delete_artifact,
    fetch,
    read_json,
    read_manifest,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_TopSecretTokenValue123"


class FakeHub:
    """An HfApi stand-in: serves `files` at COMMIT and records every call."""

    def __init__(self, files: dict[str, bytes], *, lfs_override: dict[str, str] | None = None):
        self.files = files
        self.lfs_override = lfs_override or {}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.fail_with: Exception | None = None

    def model_info(self, repo_id: str, **kwargs: Any) -> Any:
        self.calls.append(("model_info", repo_id, kwargs))
        if self.fail_with is not None:
            raise self.fail_with
        siblings = []
        for name, data in self.files.items():
            lfs = None
            if name.endswith((".safetensors", ".bin")):
                sha = self.lfs_override.get(name, hashlib.sha256(data).hexdigest())
                lfs = BlobLfsInfo(size=len(data), sha256=sha, pointer_size=134)
            siblings.append(RepoSibling(rfilename=name, size=len(data), lfs=lfs))
        return SimpleNamespace(sha=COMMIT, siblings=siblings)

    def hf_hub_download(self, repo_id: str, filename: str, **kwargs: Any) -> str:
        self.calls.append(("download", filename, kwargs))
        # Like the real cache: a blob, and a snapshot symlink pointing at it.
        cache = Path(kwargs["cache_dir"])
        blob = cache / "blobs" / hashlib.sha256(filename.encode()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(self.files[filename])
        link = cache / "snapshots" / kwargs["revision"] / filename
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
        return str(link)

    def downloaded(self) -> list[str]:
        return [name for kind, name, _ in self.calls if kind == "download"]


HUB_FILES = {
    "config.json": b'{"model_type": "llama"}',
    "model.safetensors": os.urandom(20_000),
    "pytorch_model.bin": b"pickled duplicate",
    "tokenizer.json": b'{"version": "1.0"}',
    "tokenizer_config.json": b"{}",
    "chat_template.jinja": b"{{ messages }}",
    "README.md": b"# card",
    "onnx/model.onnx": b"onnx",
}
HUB_SPEC = {"huggingface": {"repo": "org/tiny", "revision": "main"}}


# --- spec ---------------------------------------------------------------------------------


def test_spec_parsing_follows_the_api() -> None:
    assert parse_source_spec(HUB_SPEC) == HuggingFaceSource("org/tiny", "main")
    assert parse_source_spec(
        {"huggingface": {"repo": "org/tiny", "tokenSecretRef": {"name": "hf"}, "allowPickle": True}}
    ) == HuggingFaceSource("org/tiny", "main", True)
    assert parse_source_spec({"uri": "s3://bucket/base", "huggingface": None}) == UriSource(
        "s3://bucket/base/"
    )


def test_equivalent_specs_share_one_record() -> None:
    explicit = {"huggingface": {"repo": "org/tiny", "revision": "main", "allowPickle": False}}
    token_ref = {"huggingface": {"repo": "org/tiny", "tokenSecretRef": {"name": "hf"}}}
    assert record_uri("s3://bucket/", explicit) == record_uri(
        "s3://bucket/", {"huggingface": {"repo": "org/tiny"}}
    )
    assert record_uri("s3://bucket/", token_ref) == record_uri("s3://bucket/", explicit)
    assert record_uri("s3://bucket/", {"huggingface": {"repo": "org/tiny", "revision": "v2"}}) != (
        record_uri("s3://bucket/", explicit)
    )


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ([], "JSON object"),
        ({}, "exactly one"),
        ({"huggingface": {"repo": "a/b"}, "uri": "s3://bucket/x"}, "exactly one"),
        ({"git": "x"}, "source.git"),
        ({"huggingface": {"repo": "tiny"}}, "source.huggingface.repo"),
        ({"huggingface": {"repo": "a/b", "revison": "main"}}, "source.huggingface.revison"),
        ({"huggingface": {"repo": "a/b", "revision": "has space"}}, "source.huggingface.revision"),
        ({"uri": "s3://key:secret@bucket/x"}, "source.uri"),
        ({"uri": "s3://bucket/x?versionId=3"}, "query string"),
        ({"huggingface": {"repo": "a/b", "allowPickle": "maybe"}}, "allowPickle"),
    ],
)
def test_bad_specs_say_what_to_change(spec: Any, hint: str) -> None:
    with pytest.raises(SourceSpecError, match=hint) as caught:
        parse_source_spec(spec)
    assert ":secret@" not in str(caught.value)


# --- file policy --------------------------------------------------------------------------


def test_default_selection_takes_safetensors_config_tokenizer_and_chat_template() -> None:
    assert select_files(HUB_FILES) == [
        "chat_template.jinja",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


def test_pickled_weights_are_refused_unless_allowed() -> None:
    only_pickle = ["config.json", "pytorch_model.bin", "tokenizer.json"]
    with pytest.raises(SourcePolicyError, match=r"only pickled weights.*huggingface\.allowPickle"):
        select_files(only_pickle)
    with pytest.raises(SourcePolicyError, match="convert the checkpoint to safetensors"):
        select_files(only_pickle, pickle_switch=None)
    assert "pytorch_model.bin" in select_files(only_pickle, allow_pickle=True)
    with pytest.raises(SourcePolicyError, match="select pickled files"):
        select_files(HUB_FILES, ["*.bin", "*.json"])
    assert select_files(HUB_FILES, ["*.bin", "*.json"], allow_pickle=True)[0] == "config.json"
    with pytest.raises(SourcePolicyError, match="no model weights"):
        select_files(["config.json", "README.md"])


# --- token --------------------------------------------------------------------------------


def test_token_comes_from_the_file_then_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert read_hf_token({"HF_TOKEN_PATH": str(token_file), "HF_TOKEN": "other"}) == TOKEN
    assert read_hf_token({"HF_TOKEN": "env-token"}) == "env-token"
    assert read_hf_token({}) is None
    with pytest.raises(SourceError, match="cannot be read") as caught:
        read_hf_token({"HF_TOKEN_PATH": str(tmp_path / "missing")})
    assert str(tmp_path / "missing") in str(caught.value)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SourceError, match="empty"):
        read_hf_token({"HF_TOKEN_PATH": str(tmp_path / "empty")})


# --- Hub sources --------------------------------------------------------------------------


@pytest.fixture
def token_env(tmp_path: Path) -> dict[str, str]:
    token_file = tmp_path / "hf-token"
    token_file.write_text(TOKEN)
    return {"HF_TOKEN_PATH": str(token_file)}


def test_hub_source_is_fetched_once_and_recorded(
    store_uri: str,
    token_env: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = FakeHub(HUB_FILES)
    caplog.set_level(logging.DEBUG)
    record = fetch_source(HUB_SPEC, store_uri, hub_api=hub, environ=token_env, work_dir=tmp_path)

    key = base_key("org/tiny", COMMIT)
    assert record.model_dump() == {
        "id": "org/tiny",
        "revision": COMMIT,
        "uri": store_uri + f"models/{key}/",
        "key": key,
    }
    normalized = {"huggingface": {"repo": "org/tiny", "revision": "main", "allowPickle": False}}
    assert read_json(store_uri + f"sources/{source_key(normalized)}.json") == record.model_dump()
    assert sorted(hub.downloaded()) == [
        "chat_template.jinja",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert all(kwargs["revision"] == COMMIT for kind, _, kwargs in hub.calls if kind == "download")
    assert all(kwargs["token"] == TOKEN for _, _, kwargs in hub.calls)
    manifest = read_manifest(record.uri)
    assert manifest is not None and manifest.metadata["source"]["revision"] == COMMIT
    fetch(record.uri, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == HUB_FILES["model.safetensors"]
    assert TOKEN not in caplog.text
    assert not list(tmp_path.glob("modelpress-fetch-*"))  # scratch space cleaned up

    hub.calls.clear()
    again = fetch_source(HUB_SPEC, store_uri, hub_api=hub, environ=token_env)
    assert again == record and hub.calls == []  # recorded: the Hub is not asked again


def test_a_lost_base_model_is_fetched_again_at_the_pinned_commit(
    store_uri: str, token_env: dict[str, str]
) -> None:
    hub = FakeHub(HUB_FILES)
    record = fetch_source(HUB_SPEC, store_uri, hub_api=hub, environ=token_env)
    delete_artifact(record.uri)
    hub.calls.clear()
    assert fetch_source(HUB_SPEC, store_uri, hub_api=hub, environ=token_env) == record
    info_calls = [kwargs for kind, _, kwargs in hub.calls if kind == "model_info"]
    assert [call["revision"] for call in info_calls] == [COMMIT]  # not "main" again


def test_hub_errors_never_contain_the_token(
    store_uri: str, token_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    hub = FakeHub(HUB_FILES)
    hub.fail_with = RuntimeError(f"401 Unauthorized for url ...?token={TOKEN}")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError) as caught:
        fetch_source(HUB_SPEC, store_uri, hub_api=hub, environ=token_env)
    assert "org/tiny@main" in str(caught.value) and "401" in str(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    shown = "".join(traceback.format_exception(caught.value))
    assert TOKEN not in shown  # the original error is not chained into the traceback
    assert TOKEN not in caplog.text


def test_pickle_only_repo_is_refused(store_uri: str, token_env: dict[str, str]) -> None:
    hub = FakeHub({"config.json": b"{}", "pytorch_model.bin": b"pickle"})
    with pytest.raises(SourcePolicyError, match="allowPickle"):
        fetch_source(HUB_SPEC, store_uri, hub_api=hub, environ=token_env)
    assert hub.downloaded() == []
    spec = {"huggingface": {**HUB_SPEC["huggingface"], "allowPickle": True}}
    record = fetch_source(spec, store_uri, hub_api=hub, environ=token_env)
    manifest = read_manifest(record.uri)
    assert manifest is not None and manifest.file("pytorch_model.bin") is not None


def test_a_download_that_differs_from_the_hub_hash_is_not_committed(
    store_uri: str, token_env: dict[str, str]
) -> None:
    hub = FakeHub(HUB_FILES, lfs_override={"model.safetensors": "f" * 64})
    with pytest.raises(ChecksumMismatchError, match=r"model\.safetensors"):
        fetch_source(HUB_SPEC, store_uri, hub_api=hub, environ=token_env)
    assert read_manifest(store_uri + f"models/{base_key('org/tiny', COMMIT)}/") is None
    assert read_json(record_uri(store_uri, HUB_SPEC)) is None


# --- store URI sources --------------------------------------------------------------------


def test_uri_source_revision_is_the_digest_of_its_files(
    store_uri: str, tmp_path: Path, write_tree: Any
) -> None:
    checkpoint = write_tree(
        tmp_path / "ckpt",
        {"config.json": b"{}", "model.safetensors": b"w" * 1000, "notes.md": b"skip me"},
    )
    spec = {"uri": checkpoint.as_uri()}
    record = fetch_source(spec, store_uri)
    assert record.id == checkpoint.as_uri() + "/"
    assert record.key == base_key(record.id, record.revision)
    assert len(record.revision) == 64
    manifest = read_manifest(record.uri)
    assert manifest is not None
    assert [entry.path for entry in manifest.files] == ["config.json", "model.safetensors"]

    # Different bytes under another spec spelling -> a different revision and key.
    (checkpoint / "model.safetensors").write_bytes(b"v" * 1000)
    changed = fetch_source({"uri": checkpoint.as_uri() + "/"}, store_uri)
    assert changed.revision != record.revision and changed.key != record.key


def test_uri_source_from_s3_and_from_a_published_artifact(
    s3_bucket: str, tmp_path: Path, write_tree: Any
) -> None:
    from modelpress.storage import open_store, publish

    files = {"config.json": b"{}", "model.safetensors": os.urandom(5000)}
    plain = f"s3://{s3_bucket}/checkpoints/plain/"
    for name, data in files.items():
        open_store(plain).put_bytes(name, data)
    store = f"s3://{s3_bucket}/store/"
    from_plain = fetch_source({"uri": plain}, store)

    published = f"s3://{s3_bucket}/checkpoints/published/"
    publish(published, write_tree(tmp_path / "m", files))
    from_artifact = fetch_source({"uri": published}, store)
    assert from_artifact.revision == from_plain.revision  # same bytes, same revision
    fetch(from_artifact.uri, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == files["model.safetensors"]

    open_store(published).put_bytes(stored_key(published, "model.safetensors"), b"corrupted")
    with pytest.raises(ChecksumMismatchError):
        fetch_source({"uri": published}, f"s3://{s3_bucket}/another-store/")


def test_allow_patterns_narrow_the_download(tmp_path: Path, token_env: dict[str, str]) -> None:
    hub = FakeHub(HUB_FILES)
    store = (tmp_path / "store").as_uri() + "/"
    fetch_source(
        HUB_SPEC,
        store,
        hub_api=hub,
        environ=token_env,
        allow_patterns=["config.json", "*.safetensors"],
    )
    assert sorted(hub.downloaded()) == ["config.json", "model.safetensors"]
