"""Small JSON records in a store (for example `sources/<key>.json`)."""

from __future__ import annotations

import json
from typing import Any

from modelpress.storage.credentials import Credentials
from modelpress.storage.errors import InvalidURIError, StorageError
from modelpress.storage.stores import open_store
from modelpress.storage.uri import parse_uri


def _split(uri: str) -> tuple[str, str]:
    location = parse_uri(uri)
    if uri.endswith("/") or not location.name:
        raise InvalidURIError(
            f"{location} names a directory; a JSON record needs an object name like .../record.json",
            uri=str(location),
        )
    return str(location.parent()), location.name


def read_json(uri: str, *, credentials: Credentials | None = None) -> Any | None:
    """The JSON value stored at `uri`, or None when there is none."""
    parent, name = _split(uri)
    data = open_store(parent, credentials).get_bytes(name)
    if data is None:
        return None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StorageError(f"{uri} is not valid JSON: {error}", uri=uri) from None


def write_json(uri: str, value: Any, *, credentials: Credentials | None = None) -> None:
    """Store `value` as JSON at `uri`, replacing any previous record atomically."""
    parent, name = _split(uri)
    data = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")
    open_store(parent, credentials).put_bytes(name, data)
