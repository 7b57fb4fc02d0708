"""S3 credentials: explicit, from Secret-mounted files, or from the AWS environment.

Secrets live only in memory here: `repr` hides them and nothing logs them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from modelpress.storage.errors import CredentialsError

CREDENTIALS_DIR_ENV = "MODELPRESS_STORAGE_CREDENTIALS_DIR"

# Secret keys, as mounted under MODELPRESS_STORAGE_CREDENTIALS_DIR (one file each).
ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN = "AWS_SESSION_TOKEN"
ENDPOINT_URL = "AWS_ENDPOINT_URL"
REGION = "AWS_REGION"
DEFAULT_REGION = "AWS_DEFAULT_REGION"
SECRET_KEYS = (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    SESSION_TOKEN,
    ENDPOINT_URL,
    REGION,
    DEFAULT_REGION,
)

_ENDPOINT = re.compile(r"^https?://[^/@\s?#]+(/[^\s?#@]*)?$")


@dataclass(frozen=True)
class Credentials:
    """Where and as whom to reach an S3-compatible store.

    Keys left `None` fall back to boto3's own chain (instance profile, IRSA, ~/.aws).
    """

    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if bool(self.access_key_id) != bool(self.secret_access_key):
            missing = SECRET_ACCESS_KEY if self.access_key_id else ACCESS_KEY_ID
            raise CredentialsError(
                f"incomplete S3 credentials: {missing} is missing; provide both "
                f"{ACCESS_KEY_ID} and {SECRET_ACCESS_KEY}, or neither"
            )
        if self.session_token and not self.access_key_id:
            raise CredentialsError(
                f"{SESSION_TOKEN} was given without {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY}"
            )
        if self.endpoint_url and not _ENDPOINT.match(self.endpoint_url):
            raise CredentialsError(
                f"{ENDPOINT_URL} must look like https://host[:port] without user or query "
                "(got a value that does not)"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, str | bytes]) -> Credentials:
        """From plain values keyed like the Secret (`AWS_ACCESS_KEY_ID`, ...). Other keys
        are ignored, as they are where the Secret is mounted as files: the operator and the
        Jobs accept the same Secrets. AWS_DEFAULT_REGION stands in for AWS_REGION."""

        def get(key: str) -> str | None:
            value = values.get(key)
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            value = (value or "").strip()
            return value or None

        return cls(
            access_key_id=get(ACCESS_KEY_ID),
            secret_access_key=get(SECRET_ACCESS_KEY),
            session_token=get(SESSION_TOKEN),
            endpoint_url=get(ENDPOINT_URL),
            region=get(REGION) or get(DEFAULT_REGION),
        )

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> Credentials:
        """From a Kubernetes Secret's `.data` (base64-encoded values)."""
        decoded: dict[str, bytes] = {}
        for key, value in data.items():
            try:
                decoded[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise CredentialsError(f"storage Secret key {key} is not valid base64") from None
        return cls.from_mapping(decoded)

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str]) -> Credentials:
        """From a Secret mounted as files, one per key; unrelated files are ignored."""
        root = Path(directory)
        if not root.is_dir():
            raise CredentialsError(
                f"storage credentials directory {root} does not exist: mount the storage Secret "
                f"there or unset {CREDENTIALS_DIR_ENV}"
            )
        values: dict[str, bytes] = {}
        for key in SECRET_KEYS:
            path = root / key
            if path.is_file():
                try:
                    values[key] = path.read_bytes()
                except OSError as error:
                    raise CredentialsError(
                        f"cannot read storage credential file {path}: {error.strerror}"
                    ) from None
        return cls.from_mapping(values)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """From the standard AWS variables (what boto3 would read), endpoint included."""
        env = os.environ if environ is None else environ
        return cls.from_mapping(
            {
                ACCESS_KEY_ID: env.get(ACCESS_KEY_ID, ""),
                SECRET_ACCESS_KEY: env.get(SECRET_ACCESS_KEY, ""),
                SESSION_TOKEN: env.get(SESSION_TOKEN, ""),
                ENDPOINT_URL: env.get("AWS_ENDPOINT_URL_S3") or env.get(ENDPOINT_URL, ""),
                REGION: env.get(REGION) or env.get(DEFAULT_REGION, ""),
            }
        )


def resolve_credentials(
    explicit: Credentials | None = None, environ: Mapping[str, str] | None = None
) -> Credentials:
    """Explicit credentials win; then the mounted Secret directory; then the AWS environment."""
    if explicit is not None:
        return explicit
    env = os.environ if environ is None else environ
    from_env = Credentials.from_environment(env)
    directory = env.get(CREDENTIALS_DIR_ENV)
    if not directory:
        return from_env
    mounted = Credentials.from_directory(directory)
    # A Secret often carries only the keys; the endpoint and region may come from the pod env.
    return replace(
        mounted,
        endpoint_url=mounted.endpoint_url or from_env.endpoint_url,
        region=mounted.region or from_env.region,
    )
