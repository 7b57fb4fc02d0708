"""The source spec as the `fetch` command receives it (camelCase JSON), validated.

    {"huggingface": {"repo": "org/name", "revision": "main", "tokenSecretRef": {...}}}
    {"uri": "s3://bucket/base/model/"}

Either form may add `allowPatterns` (glob list) and `allowPickle` (bool) beside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelpress.sources.errors import SourceSpecError
from modelpress.storage import InvalidURIError, parse_uri

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")
_POLICY_KEYS = {"allowPatterns", "allowPickle"}


@dataclass(frozen=True)
class HuggingFaceSource:
    repo: str
    revision: str = "main"
    allow_patterns: tuple[str, ...] | None = None
    allow_pickle: bool = False


@dataclass(frozen=True)
class UriSource:
    uri: str
    allow_patterns: tuple[str, ...] | None = None
    allow_pickle: bool = False


Source = HuggingFaceSource | UriSource


def _present(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in spec.items() if value is not None}


def _policy(spec: Mapping[str, Any]) -> tuple[tuple[str, ...] | None, bool]:
    patterns = spec.get("allowPatterns")
    if patterns is not None:
        if (
            not isinstance(patterns, list)
            or not patterns
            or not all(isinstance(item, str) and item for item in patterns)
        ):
            raise SourceSpecError("allowPatterns must be a non-empty list of glob strings")
        patterns = tuple(patterns)
    allow_pickle = spec.get("allowPickle", False)
    if not isinstance(allow_pickle, bool):
        raise SourceSpecError("allowPickle must be true or false")
    return patterns, allow_pickle


def parse_source_spec(spec: Any) -> Source:
    """Validate a source spec dict; errors say which field to fix."""
    if not isinstance(spec, Mapping):
        raise SourceSpecError(
            'a source must be a JSON object: {"huggingface": {"repo": ...}} or {"uri": ...}'
        )
    fields = _present(spec)
    kinds = [kind for kind in ("huggingface", "uri") if kind in fields]
    unknown = sorted(set(fields) - {"huggingface", "uri"} - _POLICY_KEYS)
    if unknown:
        raise SourceSpecError(
            f"unknown source field(s) {unknown}: use huggingface or uri, "
            "optionally with allowPatterns and allowPickle"
        )
    if len(kinds) != 1:
        raise SourceSpecError("a source names exactly one of huggingface or uri")
    patterns, allow_pickle = _policy(fields)
    if kinds == ["uri"]:
        uri = fields["uri"]
        if not isinstance(uri, str):
            raise SourceSpecError("source uri must be a string such as s3://bucket/base/model/")
        try:
            location = parse_uri(uri)
        except InvalidURIError as error:
            raise SourceSpecError(f"source uri: {error}") from None
        return UriSource(str(location.as_prefix()), patterns, allow_pickle)
    hub = fields["huggingface"]
    if not isinstance(hub, Mapping):
        raise SourceSpecError('huggingface must be an object: {"repo": "org/name"}')
    hub = _present(hub)
    unknown = sorted(set(hub) - {"repo", "revision", "tokenSecretRef"})
    if unknown:
        raise SourceSpecError(
            f"unknown huggingface field(s) {unknown}: use repo, revision and tokenSecretRef"
        )
    repo = hub.get("repo")
    if not isinstance(repo, str) or not _REPO.match(repo) or ".." in repo:
        raise SourceSpecError(
            f"huggingface.repo {repo!r} is not a Hub repository id: write it as org/name"
        )
    revision = hub.get("revision", "main")
    if (
        not isinstance(revision, str)
        or not revision.strip()
        or any(ch.isspace() for ch in revision)
    ):
        raise SourceSpecError(
            "huggingface.revision must be a branch, tag or commit sha without spaces"
        )
    token_ref = hub.get("tokenSecretRef")
    if token_ref is not None and not isinstance(token_ref, Mapping):
        raise SourceSpecError('huggingface.tokenSecretRef must be an object: {"name": ...}')
    return HuggingFaceSource(repo, revision, patterns, allow_pickle)
