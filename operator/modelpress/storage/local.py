"""`file://` stores: a directory tree, written through temp files and renames."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from modelpress.storage.base import ObjectInfo, ObjectStore
from modelpress.storage.errors import AccessDeniedError, ObjectNotFoundError, StorageError
from modelpress.storage.hashing import ByteCallback, Digest, copy_hashing
from modelpress.storage.uri import StoreURI

TEMP_MARKER = ".modelpress-tmp-"


class FileStore(ObjectStore):
    """Objects are files under the root directory; keys are relative paths."""

    def _rooted(self, root: StoreURI) -> FileStore:
        return FileStore(root)

    @property
    def directory(self) -> Path:
        return Path(self.root.path)

    def _path(self, key: str) -> Path:
        return Path(self.root.join(key).path)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        start = self.directory / prefix.rpartition("/")[0] if prefix else self.directory
        if not start.is_dir():
            return
        with _translated(self.uri_for(prefix)):
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames.sort()
                for filename in sorted(filenames):
                    full = Path(dirpath) / filename
                    key = full.relative_to(self.directory).as_posix()
                    if not key.startswith(prefix):
                        continue
                    try:
                        stat = full.stat()
                    except FileNotFoundError:
                        continue  # removed while listing
                    yield ObjectInfo(
                        key=key,
                        size=stat.st_size,
                        modified=datetime.fromtimestamp(stat.st_mtime, UTC),
                    )

    def get_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        with _translated(self.uri_for(key)):
            try:
                return path.read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        with _translated(self.uri_for(key)), _atomic_target(target) as temp:
            temp.write_bytes(data)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f"{TEMP_MARKER}{uuid.uuid4().hex}-{target.name}")
        with _translated(self.uri_for(key)):
            try:
                temp.write_bytes(data)
                os.link(temp, target)  # atomic, and fails if the target exists
                return True
            except FileExistsError:
                return False
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()

    def upload_file(self, local: Path, key: str, on_bytes: ByteCallback | None = None) -> Digest:
        target = self._path(key)
        with (
            _translated(self.uri_for(key)),
            _atomic_target(target) as temp,
            open(local, "rb") as source,
            open(temp, "wb") as sink,
        ):
            return copy_hashing(source, sink, on_bytes)

    def download_file(self, key: str, local: Path, on_bytes: ByteCallback | None = None) -> Digest:
        source_path = self._path(key)
        if not source_path.is_file():
            raise ObjectNotFoundError(f"{self.uri_for(key)} does not exist", uri=self.uri_for(key))
        with (
            _translated(self.uri_for(key)),
            open(source_path, "rb") as source,
            open(local, "wb") as sink,
        ):
            return copy_hashing(source, sink, on_bytes)

    def delete(self, keys: Iterable[str]) -> None:
        parents: set[Path] = set()
        for key in keys:
            path = self._path(key)
            with (
                _translated(self.uri_for(key)),
                contextlib.suppress(FileNotFoundError, NotADirectoryError),
            ):
                path.unlink()
            parents.add(path.parent)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            self._prune_empty(parent)

    def _prune_empty(self, directory: Path) -> None:
        """Remove now-empty directories up to (not including) the store root."""
        root = self.directory
        while directory != root and root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent


@contextlib.contextmanager
def _atomic_target(target: Path) -> Iterator[Path]:
    """Write to a sibling temp file, then rename over `target` (readers never see halves)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f"{TEMP_MARKER}{uuid.uuid4().hex}-{target.name}")
    try:
        yield temp
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


@contextlib.contextmanager
def _translated(uri: str) -> Iterator[None]:
    """Turn OS errors into storage errors that name the URI."""
    try:
        yield
    except StorageError:
        raise
    except PermissionError as error:
        raise AccessDeniedError(f"permission denied on {uri}: {error.strerror}", uri=uri) from None
    except OSError as error:
        raise StorageError(f"{uri}: {error.strerror or error}", uri=uri) from error
