"""Storage errors: every one names the URI it is about, with secrets redacted."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error raised by `modelpress.storage`."""

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri


class InvalidURIError(StorageError, ValueError):
    """A URI that cannot name a store location; the message says what to write instead."""


class CredentialsError(StorageError):
    """Credentials are missing, incomplete or unreadable."""


class AccessDeniedError(StorageError):
    """The store rejected the credentials or they lack permission."""


class BucketNotFoundError(StorageError):
    """The bucket named by an `s3://` URI does not exist."""


class StoreUnavailableError(StorageError):
    """The store could not be reached (connection refused, timeout, endpoint down)."""


class ArtifactNotFoundError(StorageError):
    """No committed artifact (no `manifest.json`) at the URI."""


class ObjectNotFoundError(StorageError):
    """An object an operation needs is missing (for example a file a manifest lists)."""


class ArtifactConflictError(StorageError):
    """Local input does not match what publishing was told to expect."""


class ChecksumMismatchError(StorageError):
    """A file's bytes differ from what its manifest or source promised."""

    def __init__(
        self,
        path: str,
        *,
        expected: str,
        actual: str,
        uri: str | None = None,
        detail: str = "sha256",
    ) -> None:
        where = f" in {uri}" if uri else ""
        super().__init__(
            f"checksum mismatch for {path}{where}: expected {detail} {expected}, got {actual}; "
            "the stored copy is corrupt or was modified after publishing",
            uri=uri,
        )
        self.path = path
        self.expected = expected
        self.actual = actual
