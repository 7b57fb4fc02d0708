"""Resolve a source once and publish its base model at `models/<base-key>/`.

The result is recorded at `sources/<source-key>.json` as {id, revision, uri, key};
later calls read the record and touch neither the Hub nor the source again.
A moving Hub branch is pinned by that record until the spec changes.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from modelpress.api.keys import base_key, source_key
from modelpress.sources.errors import SourceError
from modelpress.sources.huggingface import (
    HubApi,
    default_api,
    download_revision,
    resolve_revision,
)
from modelpress.sources.spec import (
    HuggingFaceSource,
    UriSource,
    normalize_source_spec,
    parse_source_spec,
)
from modelpress.sources.store_source import gather_files
from modelpress.sources.token import read_hf_token
from modelpress.storage import (
    Credentials,
    StoreURI,
    parse_uri,
    publish,
    read_json,
    read_manifest,
    write_json,
)
from modelpress.storage.progress import ProgressCallback

log = logging.getLogger(__name__)


class SourceRecord(BaseModel):
    """A source resolved once: what it was, which revision, and where its base model lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    revision: str
    uri: str
    key: str


def record_uri(store_uri: str, spec: Mapping[str, Any]) -> str:
    """Where the record of `spec` lives: sources/<source_key of the normalized spec>.json."""
    key = source_key(normalize_source_spec(spec))
    return str(parse_uri(store_uri).as_prefix().join("sources", f"{key}.json"))


def model_uri(store: StoreURI, key: str) -> str:
    return str(store.as_prefix().join("models", key + "/"))


def fetch_source(
    spec: Mapping[str, Any],
    store_uri: str,
    *,
    credentials: Credentials | None = None,
    hub_api: HubApi | None = None,
    environ: Mapping[str, str] | None = None,
    work_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    allow_patterns: Sequence[str] | None = None,
) -> SourceRecord:
    """Resolve `spec`, publish its base model into the store if needed, and record it.

    `hub_api` replaces `huggingface_hub.HfApi` (tests, mirrors); `work_dir`
    holds downloads before they are published (default: the system temp dir);
    `allow_patterns` replaces the default file selection (safetensors, config,
    tokenizer).
    """
    source = parse_source_spec(spec)
    store = parse_uri(store_uri).as_prefix()
    where = record_uri(store_uri, spec)
    pinned: str | None = None
    existing = read_json(where, credentials=credentials)
    if existing is not None:
        try:
            record = SourceRecord.model_validate(existing)
        except ValidationError:
            raise SourceError(
                f"{where} is not a source record; delete it to resolve the source again"
            ) from None
        if read_manifest(record.uri, credentials=credentials) is not None:
            log.info("source already resolved: %s@%s at %s", record.id, record.revision, record.uri)
            return record
        log.info("%s lost its base model; fetching revision %s again", where, record.revision)
        pinned = record.revision
    if isinstance(source, HuggingFaceSource):
        record = _from_hub(
            source, store, pinned, credentials, hub_api, environ, work_dir, progress, allow_patterns
        )
    else:
        record = _from_store(source, store, credentials, work_dir, progress, allow_patterns)
    write_json(where, record.model_dump(), credentials=credentials)
    return record


def _from_hub(
    source: HuggingFaceSource,
    store: StoreURI,
    pinned: str | None,
    credentials: Credentials | None,
    hub_api: HubApi | None,
    environ: Mapping[str, str] | None,
    work_dir: str | Path | None,
    progress: ProgressCallback | None,
    allow_patterns: Sequence[str] | None,
) -> SourceRecord:
    token = read_hf_token(environ)
    api = hub_api if hub_api is not None else default_api(token)
    revision = resolve_revision(api, source, token, pinned, allow_patterns)
    key = base_key(source.repo, revision.commit)
    dest = model_uri(store, key)
    if read_manifest(dest, credentials=credentials) is None:
        with tempfile.TemporaryDirectory(prefix="modelpress-fetch-", dir=work_dir) as temp:
            staging = Path(temp) / "files"
            download_revision(api, revision, staging, token, progress)
            publish(
                dest,
                staging,
                {"source": {"huggingface": source.repo, "revision": revision.commit}},
                expected_sha256=revision.expected_sha256,
                progress=progress,
                credentials=credentials,
            )
    return SourceRecord(id=source.repo, revision=revision.commit, uri=dest, key=key)


def _from_store(
    source: UriSource,
    store: StoreURI,
    credentials: Credentials | None,
    work_dir: str | Path | None,
    progress: ProgressCallback | None,
    allow_patterns: Sequence[str] | None,
) -> SourceRecord:
    with tempfile.TemporaryDirectory(prefix="modelpress-fetch-", dir=work_dir) as temp:
        imported = gather_files(
            source,
            Path(temp),
            credentials=credentials,
            progress=progress,
            allow_patterns=allow_patterns,
        )
        revision = imported.revision
        key = base_key(source.uri, revision)
        dest = model_uri(store, key)
        publish(
            dest,
            imported.local_dir,
            {"source": {"uri": source.uri, "revision": revision}},
            files=[entry.path for entry in imported.files],
            expected_sha256=imported.expected_sha256,
            progress=progress,
            credentials=credentials,
        )
    return SourceRecord(id=source.uri, revision=revision, uri=dest, key=key)
