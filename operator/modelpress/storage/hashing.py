"""sha256 computed while bytes pass through, so a transfer reads its data once."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

CHUNK_BYTES = 8 * 1024 * 1024

ByteCallback = Callable[[int], None]


@dataclass(frozen=True)
class Digest:
    """What a transfer saw: the sha256 and the number of bytes."""

    sha256: str
    size: int


class HashingReader:
    """Reads a file forward exactly once, hashing every byte handed out.

    Deliberately not seekable: boto3 then reads parts sequentially into memory
    and never re-reads the source on retries, so the hash covers each byte once.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self._size = 0

    def read(self, amount: int = -1) -> bytes:
        data = self._raw.read(amount)
        if data:
            self._hash.update(data)
            self._size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def digest(self) -> Digest:
        return Digest(self._hash.hexdigest(), self._size)


class HashingWriter:
    """Writes forward only, hashing every byte; boto3 then delivers parts in order."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self._size += len(data)
        return self._raw.write(data)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def digest(self) -> Digest:
        return Digest(self._hash.hexdigest(), self._size)


def hash_file(path: str | os.PathLike[str], on_bytes: ByteCallback | None = None) -> Digest:
    """sha256 of a local file, reporting progress per chunk."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(CHUNK_BYTES)
        view = memoryview(buffer)
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            size += count
            if on_bytes is not None:
                on_bytes(count)
    return Digest(digest.hexdigest(), size)


def copy_hashing(
    source: BinaryIO, target: BinaryIO, on_bytes: ByteCallback | None = None
) -> Digest:
    """Copy a stream and hash it in the same pass."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    while True:
        count = source.readinto(buffer)  # type: ignore[attr-defined]
        if not count:
            break
        chunk = view[:count]
        digest.update(chunk)
        target.write(chunk)
        size += count
        if on_bytes is not None:
            on_bytes(count)
    return Digest(digest.hexdigest(), size)
