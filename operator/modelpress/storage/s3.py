"""`s3://` stores through boto3: endpoint override, path-style addressing, parallel multipart.

boto3 is imported lazily so the operator's CLI help stays instant. Clients are
cached per (credentials, settings): creating one costs far more than a request.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from modelpress.storage.base import ObjectInfo, ObjectStore
from modelpress.storage.credentials import Credentials
from modelpress.storage.errors import (
    AccessDeniedError,
    BucketNotFoundError,
    CredentialsError,
    ObjectNotFoundError,
    StorageError,
    StoreUnavailableError,
)
from modelpress.storage.hashing import ByteCallback, Digest, HashingReader, HashingWriter
from modelpress.storage.uri import StoreURI

MIB = 1024 * 1024
DEFAULT_REGION = "us-east-1"
_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "TokenRefreshRequired",
    "403",
}
_MISSING = {"NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True)
class S3Settings:
    """Transfer and client tuning; each field has a MODELPRESS_S3_* variable."""

    max_concurrency: int = 10
    chunk_mib: int = 16
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    addressing_style: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        env = os.environ if environ is None else environ
        defaults = cls()

        def number(name: str, default: float, kind: type) -> Any:
            raw = env.get(f"MODELPRESS_S3_{name}")
            if raw is None or raw == "":
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise StorageError(
                    f"MODELPRESS_S3_{name}={raw!r} is not a number: set a positive {kind.__name__}"
                ) from None
            if value <= 0:
                raise StorageError(f"MODELPRESS_S3_{name} must be positive, got {raw!r}")
            return value

        style = env.get("MODELPRESS_S3_ADDRESSING_STYLE") or None
        if style not in (None, "path", "virtual", "auto"):
            raise StorageError(
                f"MODELPRESS_S3_ADDRESSING_STYLE={style!r}: use path, virtual or auto"
            )
        return cls(
            max_concurrency=number("MAX_CONCURRENCY", defaults.max_concurrency, int),
            chunk_mib=number("CHUNK_MIB", defaults.chunk_mib, int),
            max_attempts=number("MAX_ATTEMPTS", defaults.max_attempts, int),
            connect_timeout=number("CONNECT_TIMEOUT", defaults.connect_timeout, float),
            read_timeout=number("READ_TIMEOUT", defaults.read_timeout, float),
            addressing_style=style,
        )

    def transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.chunk_mib * MIB,
            multipart_chunksize=self.chunk_mib * MIB,
            max_concurrency=self.max_concurrency,
            use_threads=True,
        )


@functools.lru_cache(maxsize=16)
def s3_client(credentials: Credentials, settings: S3Settings) -> Any:
    """A boto3 S3 client for these credentials and settings (cached; clients are thread-safe)."""
    import boto3
    from botocore.config import Config

    style = settings.addressing_style or ("path" if credentials.endpoint_url else "auto")
    session = boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        region_name=credentials.region or DEFAULT_REGION,
    )
    config = Config(
        signature_version="s3v4",
        # No SigV4 hash of request bodies, even on plain-HTTP endpoints (boto3 already skips
        # it on HTTPS): every upload still carries a CRC32 the server checks, and every byte
        # is sha256-verified end to end against the manifest, so signing the body would only
        # hash each byte a second time.
        s3={"addressing_style": style, "payload_signing_enabled": False},
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=settings.max_concurrency + 4,
    )
    return session.client("s3", endpoint_url=credentials.endpoint_url, config=config)


class S3Store(ObjectStore):
    """Objects under `s3://bucket/prefix/`."""

    def __init__(
        self,
        root: StoreURI,
        credentials: Credentials,
        settings: S3Settings | None = None,
    ) -> None:
        super().__init__(root)
        self.credentials = credentials
        self.settings = settings or S3Settings()
        self.client = s3_client(credentials, self.settings)
        self._transfer = self.settings.transfer_config()

    def _rooted(self, root: StoreURI) -> S3Store:
        return S3Store(root, self.credentials, self.settings)

    @property
    def bucket(self) -> str:
        return self.root.bucket

    def _key(self, key: str) -> str:
        return self.root.join(key).path if key else self.root.path

    def _errors(self, key: str = "") -> contextlib.AbstractContextManager[None]:
        return _translated(self.uri_for(key), self.bucket, self.credentials.endpoint_url)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full_prefix = self.root.path + prefix
        with self._errors(prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"][len(self.root.path) :],
                        size=item["Size"],
                        modified=item["LastModified"],
                    )

    def get_bytes(self, key: str) -> bytes | None:
        with self._errors(key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except self.client.exceptions.NoSuchKey:
                return None
            return response["Body"].read()

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        from botocore import exceptions as boto_errors

        with self._errors(key):
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
                )
                return True
            except boto_errors.ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", ""))
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code == "PreconditionFailed" or status == 412:
                    return False
                if code == "ConditionalRequestConflict" or status == 409:
                    return False  # a concurrent conditional write is in flight: it wins
                if code == "NotImplemented" or status == 501:
                    # A store without conditional writes: check, then write. A race can
                    # then replace one complete manifest by another, never corrupt one:
                    # every manifest lists content-addressed blobs.
                    if self.get_bytes(key) is not None:
                        return False
                    self.put_bytes(key, data)
                    return True
                raise

    def upload_file(self, local: Path, key: str, on_bytes: ByteCallback | None = None) -> Digest:
        with self._errors(key), open(local, "rb") as raw:
            reader = HashingReader(raw)
            self.client.upload_fileobj(
                reader, self.bucket, self._key(key), Config=self._transfer, Callback=on_bytes
            )
            return reader.digest()

    def download_file(self, key: str, local: Path, on_bytes: ByteCallback | None = None) -> Digest:
        with self._errors(key), open(local, "wb") as raw:
            writer = HashingWriter(raw)
            self.client.download_fileobj(
                self.bucket, self._key(key), writer, Config=self._transfer, Callback=on_bytes
            )
            return writer.digest()

    def abort_stale_uploads(self, before: datetime, dry_run: bool = False) -> int:
        aborted = 0
        with self._errors():
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.root.path):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] >= before:
                        continue
                    aborted += 1
                    if not dry_run:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
        return aborted

    def delete(self, keys: Iterable[str]) -> None:
        batch: list[str] = []
        for key in keys:
            batch.append(self._key(key))
            if len(batch) == 1000:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, keys: Sequence[str]) -> None:
        with self._errors():
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise StorageError(
                f"could not delete {len(errors)} object(s) under {self.uri}, first "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}",
                uri=self.uri,
            )


@contextlib.contextmanager
def _translated(uri: str, bucket: str, endpoint: str | None) -> Iterator[None]:
    """Turn botocore and s3transfer failures into storage errors that name the URI."""
    from botocore import exceptions as boto_errors

    where = endpoint or "the default AWS endpoint"
    try:
        yield
    except StorageError:
        raise
    except boto_errors.ClientError as error:
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            raise BucketNotFoundError(
                f"bucket '{bucket}' does not exist at {where} (for {uri}): create it or fix the URI",
                uri=uri,
            ) from None
        if code in _DENIED or status == 403:
            raise AccessDeniedError(
                f"access denied to {uri} ({code or status}): check the storage credentials "
                "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the bucket's policy",
                uri=uri,
            ) from None
        if code in _MISSING or status == 404:
            raise ObjectNotFoundError(f"{uri} does not exist", uri=uri) from None
        message = details.get("Message", "")
        raise StorageError(f"{uri}: S3 error {code or status}: {message}", uri=uri) from None
    except (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError):
        raise CredentialsError(
            f"no S3 credentials for {uri}: mount the storage Secret and set "
            "MODELPRESS_STORAGE_CREDENTIALS_DIR, or set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY",
            uri=uri,
        ) from None
    except (boto_errors.ConnectionError, boto_errors.HTTPClientError) as error:
        raise StoreUnavailableError(
            f"cannot reach the S3 endpoint {where} for {uri}: {type(error).__name__}",
            uri=uri,
        ) from None
    except boto_errors.BotoCoreError as error:
        raise StorageError(f"{uri}: {type(error).__name__}: {error}", uri=uri) from None
    except Exception as error:
        from s3transfer.exceptions import RetriesExceededError

        if isinstance(error, RetriesExceededError):
            raise StoreUnavailableError(
                f"transfer of {uri} kept failing at {where}: {error.last_exception!r}", uri=uri
            ) from None
        raise
