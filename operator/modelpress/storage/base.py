"""The object-store interface both backends implement.

Keys are '/'-separated paths relative to the store's root URI. Only this
package talks to a storage client; everything else goes through these calls.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from modelpress.storage.hashing import ByteCallback, Digest
from modelpress.storage.uri import StoreURI


@dataclass(frozen=True)
class ObjectInfo:
    """A listed object: key relative to the store root, size, last modification (UTC)."""

    key: str
    size: int
    modified: datetime


class ObjectStore(abc.ABC):
    """A flat namespace of objects under one root URI."""

    def __init__(self, root: StoreURI) -> None:
        self.root = root.as_prefix()

    @property
    def uri(self) -> str:
        return str(self.root)

    def uri_for(self, key: str) -> str:
        return str(self.root.join(key)) if key else self.uri

    def child(self, prefix: str) -> ObjectStore:
        """The same store rooted deeper, sharing its client."""
        return self._rooted(self.root.join(prefix + "/"))

    @abc.abstractmethod
    def _rooted(self, root: StoreURI) -> ObjectStore: ...

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, recursively."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """A small object's content, or None if it does not exist."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object atomically: readers see the old or the new content."""

    @abc.abstractmethod
    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Create a small object only if none exists: True when this call created it.

        Two callers racing on one key: exactly one gets True where the store supports
        conditional writes (S3 `If-None-Match: *`, AWS, MinIO, Ceph; exclusive links on
        a filesystem)."""

    @abc.abstractmethod
    def upload_file(self, local: Path, key: str, on_bytes: ByteCallback | None = None) -> Digest:
        """Upload a file, hashing it in the same pass."""

    @abc.abstractmethod
    def download_file(self, key: str, local: Path, on_bytes: ByteCallback | None = None) -> Digest:
        """Download an object to `local`, hashing it in the same pass."""

    def abort_stale_uploads(self, before: datetime, dry_run: bool = False) -> int:
        """Abort multipart uploads begun before `before` and never completed (their parts
        cost storage and are listed nowhere else); how many. Only object stores have them."""
        return 0

    @abc.abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete objects; missing ones are ignored."""
