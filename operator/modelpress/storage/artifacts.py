"""Artifacts: publish files first and the manifest last; fetch and verify every byte.

A prefix without `manifest.json` is absent to readers, so an interrupted
publish is invisible and a retry simply completes it (blobs already uploaded are
kept). Publishing a key that already has a manifest is a no-op: keys are
content-addressed, and so are the files inside an artifact (`blobs/<sha256>`),
which is what makes concurrent writers safe: see `publish`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
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
from modelpress.storage.manifest import (
    BLOBS,
    MANIFEST_NAME,
    Manifest,
    ManifestFile,
    blob_key,
    check_relative_path,
)
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

    Safe with any number of writers on one artifact: file bytes go to content-addressed
    blobs (`blobs/<sha256>`), so no writer overwrites another's, and the manifest is
    created only if absent. The first commit wins; later writers return the winner's
    manifest, which lists only blobs that exist with the listed size. Returns the
    existing manifest untouched if `dest_uri` is already committed. `expected_sha256`
    maps relative paths to hashes the files must have (for example those a model hub
    published); a mismatch aborts before the commit.
    """
    store = _artifact_store(dest_uri, credentials)
    existing = _read_manifest(store)
    if existing is not None:
        log.info("%s is already published; nothing to do", store.uri)
        return existing
    with Lease(store):
        manifest = stage(store, local_dir, metadata, files, expected_sha256, progress)
        return commit(store, manifest)


def stage(
    store: ObjectStore,
    local_dir: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    files: Iterable[str] | None = None,
    expected_sha256: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Upload every file as a blob (skipping blobs already there) and return the manifest
    that would commit them; nothing is visible to readers yet."""
    entries_local = local_files(Path(local_dir), files)
    if not entries_local:
        raise StorageError(f"{local_dir} has no files: nothing to publish", uri=store.uri)
    if any(path == MANIFEST_NAME for path, _ in entries_local):
        raise ArtifactConflictError(
            f"{Path(local_dir) / MANIFEST_NAME} collides with the commit marker: rename or "
            "remove it before publishing",
            uri=store.uri,
        )
    present = {info.key: info.size for info in store.list(BLOBS)}
    sizes = {path: local.stat().st_size for path, local in entries_local}
    tracker = ProgressTracker("upload", store.uri, sum(sizes.values()), progress)
    entries: list[ManifestFile] = []
    for path, local in entries_local:
        tracker.start_file(path)
        digest = hash_file(local)
        expected = (expected_sha256 or {}).get(path)
        if expected is not None and expected != digest.sha256:
            raise ChecksumMismatchError(
                path, expected=expected, actual=digest.sha256, uri=store.uri_for(path)
            )
        key = blob_key(digest.sha256)
        if present.get(key) == digest.size:
            tracker.skip(digest.size)  # the same bytes are there already
        else:
            uploaded = store.upload_file(local, key, tracker.advance)
            if uploaded != digest or digest.size != sizes[path]:
                raise ArtifactConflictError(
                    f"{local} changed while it was being published; publish again once it is "
                    "stable",
                    uri=store.uri,
                )
        entries.append(ManifestFile(path=path, bytes=digest.size, sha256=digest.sha256, object=key))
    tracker.finish()
    return Manifest.build(entries, dict(metadata or {}))


def commit(store: ObjectStore, manifest: Manifest) -> Manifest:
    """Commit `manifest` unless another writer did first; the committed one is returned.

    Every blob it lists is checked to exist with its size first (a collector or a
    crash may have removed one), so a manifest never promises bytes that are gone.
    """
    present = {info.key: info.size for info in store.list(BLOBS)}
    missing = [entry.path for entry in manifest.files if present.get(entry.key) != entry.bytes]
    if missing:
        raise ArtifactConflictError(
            f"{len(missing)} staged file(s) of {store.uri} vanished before the commit "
            f"(e.g. {missing[0]}): publish again",
            uri=store.uri,
        )
    if store.put_bytes_if_absent(MANIFEST_NAME, manifest.to_json_bytes()):
        log.info(
            "published %s: %d files, %d bytes",
            store.uri,
            len(manifest.files),
            manifest.total_bytes,
        )
        return manifest
    winner = _read_manifest(store)
    if winner is None:  # committed and deleted in between: nothing to adopt
        raise ArtifactConflictError(
            f"{store.uri} was committed and removed while this publish ran: publish again",
            uri=store.uri,
        )
    log.info("%s was committed by another writer first; its manifest is the artifact", store.uri)
    return winner


class Lease:
    """`.lease` in an artifact being published, refreshed while the upload runs: `gc`
    leaves the prefix alone while the lease is fresh, however long one file takes."""

    NAME = ".lease"
    REFRESH_SECONDS = 60.0

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="lease", daemon=True)

    def _touch(self) -> None:
        self._store.put_bytes(self.NAME, f"{os.getpid()} {time.time():.0f}\n".encode())

    def _refresh(self) -> None:
        while not self._stop.wait(self.REFRESH_SECONDS):
            with contextlib.suppress(StorageError):
                self._touch()

    def __enter__(self) -> Lease:
        self._touch()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(StorageError):
            self._store.delete([self.NAME])


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
            digest = store.download_file(entry.key, partial, tracker.advance)
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
