"""`open_store`: the one way to get an object store from a URI."""

from __future__ import annotations

from modelpress.storage.base import ObjectStore
from modelpress.storage.credentials import Credentials, resolve_credentials
from modelpress.storage.local import FileStore
from modelpress.storage.uri import parse_uri


def open_store(uri: str, credentials: Credentials | None = None) -> ObjectStore:
    """A store rooted at `uri` (`s3://bucket/prefix/` or `file:///abs/path/`).

    `credentials` lets the operator pass what it read from a Secret; without
    them, `s3://` uses MODELPRESS_STORAGE_CREDENTIALS_DIR or the AWS environment.
    """
    location = parse_uri(uri)
    if location.scheme == "file":
        return FileStore(location)
    from modelpress.storage.s3 import S3Settings, S3Store

    return S3Store(location, resolve_credentials(credentials), S3Settings.from_environment())
