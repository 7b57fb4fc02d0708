"""Object storage for modelpress: `file://` and `s3://` stores, content-addressed artifacts.

Every artifact prefix ends with `manifest.json` (written last, the commit
marker) listing each file's bytes and sha256. Nothing outside this package
talks to a storage client.
"""

from __future__ import annotations

from modelpress.storage.artifacts import (
    delete_artifact,
    fetch,
    publish,
    read_manifest,
)
from modelpress.storage.base import ObjectInfo, ObjectStore
from modelpress.storage.credentials import CREDENTIALS_DIR_ENV, Credentials
from modelpress.storage.errors import (
    AccessDeniedError,
    ArtifactConflictError,
    ArtifactNotFoundError,
    BucketNotFoundError,
    ChecksumMismatchError,
    CredentialsError,
    InvalidURIError,
    ObjectNotFoundError,
    StorageError,
    StoreUnavailableError,
)
from modelpress.storage.gc import GcReport, StagingPrefix, gc
from modelpress.storage.manifest import MANIFEST_NAME, Manifest, ManifestFile
from modelpress.storage.progress import (
    PlainReporter,
    ProgressCallback,
    ProgressEvent,
    RichReporter,
    default_reporter,
)
from modelpress.storage.records import read_json, write_json
from modelpress.storage.stores import open_store
from modelpress.storage.uri import StoreURI, parse_uri, redact_uri

__all__ = [
    "CREDENTIALS_DIR_ENV",
    "MANIFEST_NAME",
    "AccessDeniedError",
    "ArtifactConflictError",
    "ArtifactNotFoundError",
    "BucketNotFoundError",
    "ChecksumMismatchError",
    "Credentials",
    "CredentialsError",
    "GcReport",
    "InvalidURIError",
    "Manifest",
    "ManifestFile",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "PlainReporter",
    "ProgressCallback",
    "ProgressEvent",
    "RichReporter",
    "StagingPrefix",
    "StorageError",
    "StoreURI",
    "StoreUnavailableError",
    "default_reporter",
    "delete_artifact",
    "fetch",
    "gc",
    "open_store",
    "parse_uri",
    "publish",
    "read_json",
    "read_manifest",
    "redact_uri",
    "write_json",
]
