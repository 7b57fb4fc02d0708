"""Content keys: sha256 of the canonical JSON of what determines a result."""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_LENGTH = 20


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: equal values always serialize to equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def content_key(value: Any) -> str:
    """The first KEY_LENGTH hex characters of sha256(canonical_json(value))."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:KEY_LENGTH]


def source_key(source_spec: dict[str, Any]) -> str:
    """Key of a source spec: where its resolution is recorded (sources/<key>.json)."""
    return content_key(source_spec)


def base_key(source_id: str, revision: str) -> str:
    """Key of a base model: one per (source id, resolved revision), at models/<key>/."""
    return content_key({"id": source_id, "revision": revision})
