"""Check a committed artifact byte for byte, and repair one that fails.

Repair removes the manifest (so readers see no artifact and the next publish computes
it again) and every object that failed, so that the next publish cannot reuse a
damaged blob; intact blobs stay and are reused.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from modelpress.storage.artifacts import _artifact_store, _read_manifest
from modelpress.storage.credentials import Credentials
from modelpress.storage.errors import ObjectNotFoundError, StorageError
from modelpress.storage.manifest import MANIFEST_NAME


@dataclass
class Verification:
    uri: str
    files: int = 0
    problems: list[str] = field(default_factory=list)
    """One line per problem, naming the file."""
    damaged: list[str] = field(default_factory=list)
    """Objects to remove on repair (the manifest first)."""
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_artifact(
    uri: str, *, repair: bool = False, credentials: Credentials | None = None
) -> Verification:
    store = _artifact_store(uri, credentials)
    result = Verification(store.uri)
    try:
        manifest = _read_manifest(store)
    except StorageError as error:
        result.problems.append(str(error))
        result.damaged.append(MANIFEST_NAME)
        manifest = None
    else:
        if manifest is None:
            result.problems.append(f"{store.uri} has no {MANIFEST_NAME}: nothing is committed")
    if manifest is not None:
        result.files = len(manifest.files)
        with tempfile.TemporaryDirectory(prefix="modelpress-verify-") as temp:
            scratch = Path(temp) / "object"
            for entry in manifest.files:
                try:
                    digest = store.download_file(entry.key, scratch)
                except ObjectNotFoundError:
                    result.problems.append(f"{entry.path}: missing ({entry.key})")
                    result.damaged.append(entry.key)
                    continue
                if (digest.size, digest.sha256) != (entry.bytes, entry.sha256):
                    result.problems.append(
                        f"{entry.path}: {digest.size} bytes with sha256 {digest.sha256}, the "
                        f"manifest lists {entry.bytes} bytes with sha256 {entry.sha256}"
                    )
                    result.damaged.append(entry.key)
        if result.damaged:
            result.damaged.insert(0, MANIFEST_NAME)
    if repair and result.damaged:
        store.delete(result.damaged)  # the manifest first: readers see no artifact at once
        result.repaired = True
    return result
