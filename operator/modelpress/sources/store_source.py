"""Sources that already sit in a store: a plain checkpoint directory, or a published artifact.

A plain checkpoint is imported by hashing its files; its revision is the
digest of the resulting file list, so the same bytes always get the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelpress.sources.policy import select_files
from modelpress.sources.spec import UriSource
from modelpress.storage import (
    ChecksumMismatchError,
    Credentials,
    Manifest,
    ManifestFile,
    open_store,
    read_manifest,
)
from modelpress.storage.hashing import hash_file
from modelpress.storage.local import TEMP_MARKER, FileStore
from modelpress.storage.progress import ProgressCallback, ProgressTracker


@dataclass(frozen=True)
class ImportedFiles:
    """Selected files, their hashes, and where they are on local disk."""

    local_dir: Path
    files: tuple[ManifestFile, ...]

    @property
    def revision(self) -> str:
        return file_list_digest(self.files)

    @property
    def expected_sha256(self) -> dict[str, str]:
        return {entry.path: entry.sha256 for entry in self.files}


def file_list_digest(files: tuple[ManifestFile, ...] | list[ManifestFile]) -> str:
    """sha256 of the canonical JSON of (path, bytes, sha256) for every file, sorted by path."""
    listing = [
        {"path": entry.path, "bytes": entry.bytes, "sha256": entry.sha256}
        for entry in sorted(files, key=lambda entry: entry.path)
    ]
    canonical = json.dumps(listing, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def gather_files(
    source: UriSource,
    staging: Path,
    *,
    credentials: Credentials | None = None,
    progress: ProgressCallback | None = None,
    allow_patterns: Sequence[str] | None = None,
) -> ImportedFiles:
    """Hash the selected files of `source`, downloading them into `staging` unless local.

    `file://` checkpoints are hashed in place (no copy); remote ones are
    downloaded and hashed in one pass. Files of a published artifact are
    checked against its manifest.
    """
    store = open_store(source.uri, credentials)
    manifest: Manifest | None = read_manifest(source.uri, credentials=credentials)
    if manifest is not None:
        sizes = {entry.path: entry.bytes for entry in manifest.files}
        known = {entry.path: entry.sha256 for entry in manifest.files}
        stored_at = {entry.path: entry.key for entry in manifest.files}
    else:
        sizes = {
            info.key: info.size
            for info in store.list()
            if TEMP_MARKER not in info.key and not info.key.endswith(".modelpress-partial")
        }
        known = {}
        stored_at = {}
    selected = select_files(
        sizes,
        allow_patterns,
        allow_pickle=source.allow_pickle,
        source=source.uri,
        pickle_switch=None,
    )
    # A local checkpoint laid out as files is hashed where it lies; anything else (remote,
    # or an artifact whose files are content-addressed blobs) is copied into `staging`.
    in_place = isinstance(store, FileStore) and all(stored_at.get(p, p) == p for p in selected)
    action = "hash" if in_place else "download"
    tracker = ProgressTracker(action, source.uri, sum(sizes[path] for path in selected), progress)
    files: list[ManifestFile] = []
    local_dir = store.directory if isinstance(store, FileStore) and in_place else staging
    for path in selected:
        tracker.start_file(path)
        key = stored_at.get(path, path)
        if isinstance(store, FileStore) and in_place:
            digest = hash_file(store.directory / path, tracker.advance)
        else:
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = store.download_file(key, target, tracker.advance)
        if path in known and known[path] != digest.sha256:
            raise ChecksumMismatchError(
                path, expected=known[path], actual=digest.sha256, uri=store.uri_for(path)
            )
        files.append(ManifestFile(path=path, bytes=digest.size, sha256=digest.sha256))
    tracker.finish()
    return ImportedFiles(local_dir, tuple(files))
