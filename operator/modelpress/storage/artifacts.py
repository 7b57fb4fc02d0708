"""Artifacts: publish files first and the manifest last; fetch and verify every byte.

A prefix without `manifest.json` is absent to readers, so an interrupted
publish is invisible and a retry simply completes it. Publishing a key that
already has a manifest is a no-op: keys are content-addressed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelpress.problems import describe
from modelpress.storage.base import ObjectStore
from modelpress.storage.credentials import Credentials
from modelpress.storage.errors import (
    ArtifactConflictError,
    ArtifactNotFoundError,
    ChecksumMismatchError,
    InvalidURIError,
    StorageError,
)
from modelpress.storage.hashing import hash_file
from modelpress.storage.manifest import MANIFEST_NAME, Manifest, ManifestFile, check_relative_path
from modelpress.storage.progress import ProgressCallback, ProgressTracker
from modelpress.storage.stores import open_store

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".modelpress-partial"


def _artifact_store(uri: str, credentials: Credentials | None) -> ObjectStore:
    """A store rooted at an artifact prefix; never a bucket or filesystem root."""
    store = open_store(uri, credentials)
    if store.root.path in ("", "/"):
        raise InvalidURIError(
            f"{store.uri} is a bucket or filesystem root, not an artifact prefix: "
            "name a directory such as .../artifacts/<key>/",
            uri=store.uri,
        )
    return store


def read_manifest(uri: str, *, credentials: Credentials | None = None) -> Manifest | None:
    """The committed manifest at `uri`, or None when nothing is committed there."""
    return _read_manifest(open_store(uri, credentials))


def _read_manifest(store: ObjectStore) -> Manifest | None:
    data = store.get_bytes(MANIFEST_NAME)
    if data is None:
        return None
    try:
        return Manifest.from_json_bytes(data)
    except ValidationError as error:
        uri = store.uri_for(MANIFEST_NAME)
        raise StorageError(
            f"{uri} is not a valid manifest ({describe(error, limit=1)}); delete the artifact "
            "and publish it again",
            uri=uri,
        ) from None


def local_files(local_dir: Path, only: Iterable[str] | None = None) -> list[tuple[str, Path]]:
    """(relative path, local path) of every regular file under `local_dir`, sorted.

    Symlinks are followed (a Hugging Face snapshot is made of them); `only`
    restricts the result to the given relative paths, all of which must exist.
    """
    if not local_dir.is_dir():
        raise StorageError(f"{local_dir} is not a directory: nothing to publish")
    if only is not None:
        wanted = sorted({check_relative_path(path) for path in only})
        missing = [path for path in wanted if not (local_dir / path).is_file()]
        if missing:
            raise StorageError(f"files to publish are missing from {local_dir}: {missing}")
        return [(path, local_dir / path) for path in wanted]
    found: list[tuple[str, Path]] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(local_dir, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop
            dirnames.clear()
            continue
        seen_dirs.add(real)
        for filename in filenames:
            path = Path(dirpath) / filename
            if not path.is_file():
                raise StorageError(f"{path} is not a regular file (broken link or special file)")
            found.append((path.relative_to(local_dir).as_posix(), path))
    return sorted(found)


def publish(
    dest_uri: str,
    local_dir: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    *,
    files: Iterable[str] | None = None,
    expected_sha256: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
    credentials: Credentials | None = None,
) -> Manifest:
    """Upload `local_dir` (or just `files` of it) to `dest_uri` and commit it with a manifest.

    Returns the existing manifest untouched if `dest_uri` is already committed.
    `expected_sha256` maps relative paths to hashes the files must have (for
    example those a model hub published); a mismatch aborts before the commit.
    """
    store = _artifact_store(dest_uri, credentials)
    existing = _read_manifest(store)
    if existing is not None:
        log.info("%s is already published; nothing to do", store.uri)
        return existing
    entries_local = local_files(Path(local_dir), files)
    if not entries_local:
        raise StorageError(f"{local_dir} has no files: nothing to publish", uri=store.uri)
    if any(path == MANIFEST_NAME for path, _ in entries_local):
        raise ArtifactConflictError(
            f"{Path(local_dir) / MANIFEST_NAME} collides with the commit marker: rename or "
            "remove it before publishing",
            uri=store.uri,
        )
    sizes = {path: local.stat().st_size for path, local in entries_local}
    tracker = ProgressTracker("upload", store.uri, sum(sizes.values()), progress)
    entries: list[ManifestFile] = []
    for path, local in entries_local:
        tracker.start_file(path)
        digest = store.upload_file(local, path, tracker.advance)
        if digest.size != sizes[path]:
            raise ArtifactConflictError(
                f"{local} changed while it was being published ({sizes[path]} bytes listed, "
                f"{digest.size} uploaded); publish again once it is stable",
                uri=store.uri,
            )
        expected = (expected_sha256 or {}).get(path)
        if expected is not None and expected != digest.sha256:
            raise ChecksumMismatchError(
                path, expected=expected, actual=digest.sha256, uri=store.uri_for(path)
            )
        entries.append(ManifestFile(path=path, bytes=digest.size, sha256=digest.sha256))
    manifest = Manifest.build(entries, dict(metadata or {}))
    store.put_bytes(MANIFEST_NAME, manifest.to_json_bytes())
    tracker.finish()
    log.info("published %s: %d files, %d bytes", store.uri, len(entries), manifest.total_bytes)
    return manifest


def fetch(
    uri: str,
    dest_dir: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    credentials: Credentials | None = None,
) -> Manifest:
    """Download the artifact at `uri` into `dest_dir`, verifying every file's sha256.

    Fails closed: a file whose bytes differ from the manifest is not left in
    place and the error names it. Files already present with the right hash
    are kept, so an interrupted fetch resumes where it stopped.
    """
    store = open_store(uri, credentials)
    manifest = _read_manifest(store)
    if manifest is None:
        raise ArtifactNotFoundError(
            f"no artifact at {store.uri}: it has no {MANIFEST_NAME} (never published, or still "
            "being published)",
            uri=store.uri,
        )
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    tracker = ProgressTracker("download", store.uri, manifest.total_bytes, progress)
    for entry in manifest.files:
        tracker.start_file(entry.path)
        target = dest / entry.path
        if _already_present(target, entry):
            tracker.skip(entry.bytes)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        try:
            digest = store.download_file(entry.path, partial, tracker.advance)
            if digest.size != entry.bytes:
                raise ChecksumMismatchError(
                    entry.path,
                    expected=str(entry.bytes),
                    actual=str(digest.size),
                    uri=store.uri_for(entry.path),
                    detail="size",
                )
            if digest.sha256 != entry.sha256:
                raise ChecksumMismatchError(
                    entry.path,
                    expected=entry.sha256,
                    actual=digest.sha256,
                    uri=store.uri_for(entry.path),
                )
            os.replace(partial, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
    tracker.finish()
    return manifest


def _already_present(target: Path, entry: ManifestFile) -> bool:
    """True when `target` holds exactly the manifest's bytes (checked by hash, not trusted)."""
    try:
        if not target.is_file() or target.stat().st_size != entry.bytes:
            return False
    except OSError:
        return False
    return hash_file(target).sha256 == entry.sha256


def delete_artifact(uri: str, *, credentials: Credentials | None = None) -> int:
    """Delete an artifact: the manifest first (readers see it gone at once), then its files.

    Returns how many objects were deleted.
    """
    store = _artifact_store(uri, credentials)
    keys = [info.key for info in store.list()]
    if MANIFEST_NAME in keys:
        store.delete([MANIFEST_NAME])
    rest = [key for key in keys if key != MANIFEST_NAME]
    store.delete(rest)
    return len(keys)
