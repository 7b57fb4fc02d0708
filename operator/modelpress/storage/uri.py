"""Parsing and validating store URIs (`s3://bucket/prefix/`, `file:///abs/path/`).

Pure string work: no I/O. Every rejection names the URI with secrets redacted
and says what to write instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote

from modelpress.storage.errors import InvalidURIError

Scheme = Literal["s3", "file"]

_SCHEMES: tuple[Scheme, ...] = ("s3", "file")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Up to the last '@': secrets may themselves contain '/' (AWS secret keys often do).
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://).*@", re.DOTALL)
_QUERY = re.compile(r"([?#]).*$", re.DOTALL)


def redact_uri(text: str) -> str:
    """Hide user-info (`key:secret@`) and query strings, which may carry secrets."""
    text = _USERINFO.sub(r"\1***@", text)
    return _QUERY.sub(r"\1***", text)


@dataclass(frozen=True)
class StoreURI:
    """A validated location. `path` is a key prefix (s3) or an absolute path (file)."""

    scheme: Scheme
    bucket: str
    path: str

    def __str__(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.path}"
        return "file://" + quote(self.path, safe="/")

    @property
    def name(self) -> str:
        """Last path segment ('' at a bucket or filesystem root)."""
        return self.path.rstrip("/").rpartition("/")[2]

    def as_prefix(self) -> StoreURI:
        """The same location as a directory: ends with '/'."""
        if self.path.endswith("/") or (self.scheme == "s3" and not self.path):
            return self
        return StoreURI(self.scheme, self.bucket, self.path + "/")

    def parent(self) -> StoreURI:
        """The directory holding this location."""
        trimmed = self.path.rstrip("/")
        head = trimmed.rpartition("/")[0]
        if self.scheme == "file":
            return StoreURI("file", "", (head or "") + "/")
        return StoreURI("s3", self.bucket, head + "/" if head else "")

    def join(self, *parts: str) -> StoreURI:
        """A location below this one; each part is a relative, `..`-free path."""
        segments = [segment for part in parts for segment in part.split("/") if segment]
        for segment in segments:
            _check_segment(segment, str(self))
        base = self.as_prefix().path
        trailing = "/" if parts and parts[-1].endswith("/") else ""
        return StoreURI(self.scheme, self.bucket, base + "/".join(segments) + trailing)


def _check_segment(segment: str, shown: str) -> None:
    decoded = unquote(segment)
    if segment in (".", "..") or decoded in (".", ".."):
        raise InvalidURIError(
            f"'{shown}' contains a '{decoded}' path segment: write the location without '.' or '..'",
            uri=shown,
        )
    if any(ord(ch) < 32 for ch in decoded) or "\\" in decoded:
        raise InvalidURIError(
            f"'{shown}' contains control characters or backslashes: use plain '/'-separated names",
            uri=shown,
        )


def _normalized_path(raw: str, shown: str) -> str:
    segments = [segment for segment in raw.split("/") if segment]
    for segment in segments:
        _check_segment(segment, shown)
    trailing = "/" if raw.endswith("/") and segments else ""
    return "/".join(segments) + trailing


def parse_uri(text: str) -> StoreURI:
    """Validate `text` as `s3://bucket[/prefix]`, `file:///abs/path` or an absolute path."""
    if not isinstance(text, str) or not text:
        raise InvalidURIError("empty store URI: use s3://bucket/prefix/ or file:///absolute/path/")
    shown = redact_uri(text)
    if "://" not in text:
        if text.startswith("/"):
            return StoreURI("file", "", "/" + _normalized_path(text, shown))
        raise InvalidURIError(
            f"'{shown}' is not a URI: use s3://bucket/prefix/ or file:///absolute/path/",
            uri=shown,
        )
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidURIError(
            f"unsupported scheme '{scheme}://' in '{shown}': use s3:// or file://", uri=shown
        )
    authority, slash, raw_path = rest.partition("/")
    # Userinfo ('key:secret@') always puts '@' or ':' before the first '/', even when the
    # secret holds a '/'; an '@' further on is part of an object's name.
    if "@" in authority or (":" in authority and "@" in rest):
        raise InvalidURIError(
            f"'{shown}' embeds credentials: remove them from the URI and provide them through "
            "a Secret (MODELPRESS_STORAGE_CREDENTIALS_DIR) or the AWS environment",
            uri=shown,
        )
    if re.search(r"[?#]", rest):
        raise InvalidURIError(
            f"'{shown}' has a query string or fragment: store URIs take only a bucket and a path",
            uri=shown,
        )
    if scheme == "file":
        if authority not in ("", "localhost"):
            raise InvalidURIError(
                f"'{shown}' is not an absolute file URI: write file:///absolute/path "
                "(three slashes); relative paths are not allowed",
                uri=shown,
            )
        if not slash:
            raise InvalidURIError(f"'{shown}' has no path: write file:///absolute/path", uri=shown)
        path = unquote(raw_path)
        return StoreURI("file", "", "/" + _normalized_path(path, shown))
    if not authority:
        raise InvalidURIError(f"'{shown}' names no bucket: write s3://bucket/prefix/", uri=shown)
    if not _BUCKET.match(authority) or ".." in authority:
        raise InvalidURIError(
            f"'{authority}' in '{shown}' is not a valid bucket name: use 3-63 lowercase letters, "
            "digits, '.' or '-', without a port or credentials",
            uri=shown,
        )
    return StoreURI("s3", authority, _normalized_path(raw_path, shown))
