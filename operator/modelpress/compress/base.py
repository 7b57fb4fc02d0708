"""The base model a variant starts from: a published artifact (store URI) or a local directory.

Only the small files (config, tokenizer, generation config) are fetched at first,
so every check can run before the weights are downloaded; `fetch_weights` then
completes the download, keeping the small files already verified.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpress.compress.errors import CompressionError

log = logging.getLogger(__name__)

LIGHT_FILE_LIMIT = 64 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")


@dataclass
class Base:
    """Where the base model is, locally and originally, and what identifies its content."""

    location: str
    directory: Path
    identity: str
    metadata: dict[str, Any] = field(default_factory=dict)
    remote: bool = False
    credentials: Any = None


def as_uri(location: str) -> str:
    """A plain path becomes a file:// URI; URIs are returned as they are."""
    if "://" in location:
        return location
    return "file://" + str(Path(location).resolve()) + "/"


def open_base(location: str, scratch: Path, *, credentials: Any = None) -> Base:
    """The base at `location` with its small files available locally."""
    local = Path(location) if "://" not in location else None
    if local is not None and not (local / "manifest.json").is_file():
        if not (local / "config.json").is_file():
            raise CompressionError(
                f"base model {location} has no config.json: give a Hugging Face checkpoint "
                "directory or a published base model URI",
                reason="BaseModelNotFound",
            )
        return Base(location, local, _local_identity(local))
    uri = as_uri(location)
    from modelpress.storage import open_store, read_manifest

    manifest = read_manifest(uri, credentials=credentials)
    if manifest is None:
        raise CompressionError(
            f"no base model is published at {uri} (no manifest.json): run `modelpress fetch` "
            "first or fix --base",
            reason="BaseModelNotFound",
        )
    directory = scratch / "base"
    store = open_store(uri, credentials)
    for entry in manifest.files:
        if entry.path.endswith(WEIGHT_SUFFIXES) or entry.bytes > LIGHT_FILE_LIMIT:
            continue
        target = directory / entry.path
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == entry.sha256:
            continue
        data = store.get_bytes(entry.key)
        if data is None or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise CompressionError(
                f"{uri}{entry.path} is missing or differs from its manifest: publish the base "
                "model again",
                reason="BaseModelCorrupt",
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    identity = hashlib.sha256(
        "".join(f"{e.path}:{e.sha256}\n" for e in manifest.files).encode()
    ).hexdigest()
    return Base(uri, directory, identity, dict(manifest.metadata), True, credentials)


def fetch_weights(base: Base) -> None:
    """Download (and verify) the rest of a published base model."""
    if not base.remote:
        return
    from modelpress.storage import fetch

    log.info("downloading the base model from %s", base.location)
    fetch(base.location, base.directory, credentials=base.credentials)


def _local_identity(directory: Path) -> str:
    """Names a local checkpoint's content by its files' names, sizes and modification times."""
    digest = hashlib.sha256(str(directory.resolve()).encode())
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(
                f"{path.relative_to(directory)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()
