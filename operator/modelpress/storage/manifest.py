"""The manifest: an artifact's file list with sizes and sha256, written last as its commit marker."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

MANIFEST_NAME = "manifest.json"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_relative_path(path: str) -> str:
    """A path inside an artifact: relative, '/'-separated, no '.', '..' or empty segments."""
    segments = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or any(segment in ("", ".", "..") for segment in segments)
        or any(ord(ch) < 32 for ch in path)
    ):
        raise ValueError(
            f"artifact file path {path!r} must be relative and free of '.', '..', "
            "empty segments, backslashes and control characters"
        )
    return path


class _CamelModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


BLOBS = "blobs/"


def blob_key(sha256: str) -> str:
    """Where bytes with this hash are stored inside an artifact: content-addressed, so two
    writers racing on one artifact can never overwrite each other's files."""
    return f"{BLOBS}{sha256}"


class ManifestFile(_CamelModel):
    """One file of an artifact."""

    path: str
    bytes: int = Field(ge=0)
    sha256: str
    object: str | None = None
    """Where the bytes are stored, relative to the artifact (`blobs/<sha256>`). Unset in
    artifacts published before content-addressed blobs: the file lies at its path."""

    @property
    def key(self) -> str:
        return self.object or self.path

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        return check_relative_path(value)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("sha256 must be 64 lowercase hex characters")
        return value


class Manifest(_CamelModel):
    """Every file of an artifact, its total size, when it was committed, and free metadata."""

    files: list[ManifestFile]
    total_bytes: int = Field(ge=0)
    created_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        paths = [entry.path for entry in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("manifest lists a file path more than once")
        if MANIFEST_NAME in paths:
            raise ValueError(f"{MANIFEST_NAME} is reserved and cannot be an artifact file")
        total = sum(entry.bytes for entry in self.files)
        if total != self.total_bytes:
            raise ValueError(f"totalBytes {self.total_bytes} differs from the files' sum {total}")
        return self

    @classmethod
    def build(cls, files: list[ManifestFile], metadata: dict[str, Any] | None = None) -> Manifest:
        ordered = sorted(files, key=lambda entry: entry.path)
        return cls(
            files=ordered,
            total_bytes=sum(entry.bytes for entry in ordered),
            created_at=datetime.now(UTC),
            metadata=dict(metadata or {}),
        )

    def to_json_bytes(self) -> bytes:
        return (
            self.model_dump_json(by_alias=True, indent=2, exclude_none=True).encode("utf-8") + b"\n"
        )

    @classmethod
    def from_json_bytes(cls, data: bytes) -> Manifest:
        return cls.model_validate_json(data)

    def file(self, path: str) -> ManifestFile | None:
        return next((entry for entry in self.files if entry.path == path), None)
