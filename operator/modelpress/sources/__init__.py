"""Base models from the Hugging Face Hub or a store URI, fetched once per (source, revision)."""

from __future__ import annotations

from modelpress.sources.errors import SourceError, SourcePolicyError, SourceSpecError
from modelpress.sources.fetch import SourceRecord, fetch_source, record_uri
from modelpress.sources.policy import DEFAULT_ALLOW_PATTERNS, select_files
from modelpress.sources.spec import HuggingFaceSource, UriSource, parse_source_spec
from modelpress.sources.token import read_hf_token

__all__ = [
    "DEFAULT_ALLOW_PATTERNS",
    "HuggingFaceSource",
    "SourceError",
    "SourcePolicyError",
    "SourceRecord",
    "SourceSpecError",
    "UriSource",
    "fetch_source",
    "parse_source_spec",
    "read_hf_token",
    "record_uri",
    "select_files",
]
