"""The source spec as the `fetch` command receives it: `spec.source` of a CompressedModel.

    {"huggingface": {"repo": "org/name", "revision": "main", "tokenSecretRef": {...},
                     "allowPickle": false}}
    {"uri": "s3://bucket/base/model/"}

Validation is the API's own (`modelpress.api.inputs.Source`), so the command
accepts exactly what a CompressedModel may contain, and the source key is
computed from the same normalized form the operator sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelpress.problems import describe
from modelpress.sources.errors import SourceSpecError
from modelpress.storage import InvalidURIError, parse_uri


@dataclass(frozen=True)
class HuggingFaceSource:
    repo: str
    revision: str = "main"
    allow_pickle: bool = False


@dataclass(frozen=True)
class UriSource:
    uri: str
    allow_pickle: bool = False


Source = HuggingFaceSource | UriSource


def normalize_source_spec(spec: Any) -> dict[str, Any]:
    """The spec validated by the API model and written back in wire form (defaults filled)."""
    from modelpress.api.inputs import Source as ApiSource

    if not isinstance(spec, Mapping):
        raise SourceSpecError(
            'a source must be a JSON object: {"huggingface": {"repo": "org/name"}} or {"uri": ...}'
        )
    try:
        return ApiSource.model_validate(dict(spec)).to_wire()
    except ValidationError as error:
        raise SourceSpecError(describe(error, ("source",), limit=3)) from None


def parse_source_spec(spec: Any) -> Source:
    """Validate a source spec; errors name the field to fix."""
    wire = normalize_source_spec(spec)
    if "uri" in wire:
        try:
            location = parse_uri(wire["uri"])
        except InvalidURIError as error:
            raise SourceSpecError(f"source.uri: {error}") from None
        return UriSource(str(location.as_prefix()))
    hub = wire["huggingface"]
    return HuggingFaceSource(hub["repo"], hub["revision"], hub.get("allowPickle", False))
