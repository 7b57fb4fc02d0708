"""The base model a variant starts from: a published artifact (store URI) or a local directory.

Only the small files (config, tokenizer, generation config) are fetched at first,
so every check can run before the weights are downloaded; `fetch_weights` then
completes the download, keeping the small files already verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
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


def open_base(
    location: str, scratch: Path, *, credentials: Any = None, shared: Path | None = None
) -> Base:
    """The base at `location` with its small files available locally: in `scratch`, or
    in `shared` where the processes of a distributed distillation share one copy (each
    would otherwise download the whole model into its own scratch space)."""
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
    identity = hashlib.sha256(
        "".join(f"{e.path}:{e.sha256}\n" for e in manifest.files).encode()
    ).hexdigest()
    directory = shared / f"base-{identity[:16]}" if shared is not None else scratch / "base"
    store = open_store(uri, credentials)
    with _exclusive(directory):
        for entry in manifest.files:
            if entry.path.endswith(WEIGHT_SUFFIXES) or entry.bytes > LIGHT_FILE_LIMIT:
                continue
            target = directory / entry.path
            if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == entry.sha256:
                continue
            data = store.get_bytes(entry.key)
            if data is None or hashlib.sha256(data).hexdigest() != entry.sha256:
                raise CompressionError(
                    f"{uri}{entry.path} is missing or differs from its manifest: publish the "
                    "base model again",
                    reason="BaseModelCorrupt",
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return Base(uri, directory, identity, dict(manifest.metadata), True, credentials)


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One process at a time writes `directory` (a lock file beside it)."""
    import fcntl

    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _complete_marker(base: Base) -> Path:
    return base.directory.parent / f".{base.directory.name}.complete"


def fetch_weights(base: Base) -> None:
    """Download (and verify) the rest of a published base model, once per directory: the
    processes sharing it wait for the first one's download and then use it."""
    if not base.remote:
        return
    from modelpress.storage import fetch

    marker = _complete_marker(base)
    with _exclusive(base.directory):
        if marker.is_file() and marker.read_text() == base.identity:
            log.info("the base model is already downloaded at %s", base.directory)
            return
        log.info("downloading the base model from %s", base.location)
        fetch(base.location, base.directory, credentials=base.credentials)
        marker.write_text(base.identity)


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
