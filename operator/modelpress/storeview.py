"""What the store holds for one CompressedModel: its source record, base model and
variant artifacts, read with a cache. Shared by the operator and local mode, so
both see the same store the same way.

Reads are synchronous (boto3); the operator runs them in threads. A committed
manifest never changes (its key is its content), so manifests and source records
that were found are remembered for `cache_seconds`; what was missing is asked
again every time, since a Job may have just published it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from modelpress.api.spec import CompressedModelSpec
from modelpress.plan.observed import Artifact, SourceRecord
from modelpress.plan.recipes import artifact_uri
from modelpress.storage.errors import (
    AccessDeniedError,
    BucketNotFoundError,
    CredentialsError,
    StorageError,
    StoreUnavailableError,
)


class RecordError(StorageError):
    """The store's record of the source cannot be used; the message names it."""


@dataclass(frozen=True)
class StoreView:
    source: SourceRecord | None
    base: Artifact | None
    artifacts: dict[str, Artifact]
    corrupt: dict[str, str] = field(default_factory=dict)
    """Variant keys whose manifest cannot be read, and why."""


class StoreReader:
    """Reads source records and manifests, remembering what was found."""

    def __init__(self, cache_seconds: float, max_entries: int = 20_000) -> None:
        self._cache_seconds = cache_seconds
        self._max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self._configs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def _cached(self, key: tuple[str, str]) -> Any | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if time.monotonic() - entry[0] > self._cache_seconds:
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
        return entry[1]

    def _remember(self, key: tuple[str, str], value: Any) -> None:
        """Remember `value`, dropping what expired and, past the ceiling, the least
        recently used."""
        now = time.monotonic()
        with self._lock:
            self._cache[key] = (now, value)
            self._cache.move_to_end(key)
            while self._cache:
                oldest_key, (when, _) = next(iter(self._cache.items()))
                if len(self._cache) <= self._max_entries and now - when <= self._cache_seconds:
                    break
                del self._cache[oldest_key]

    def forget(self, uris: Iterable[str]) -> None:
        """Drop remembered artifacts (after they were deleted)."""
        targets = set(uris)
        with self._lock:
            for key in [k for k in self._cache if k[1] in targets]:
                del self._cache[key]

    def forget_under(self, prefix: str) -> None:
        """Drop everything remembered under a store prefix (it was changed out of band)."""
        with self._lock:
            for key in [k for k in self._cache if k[1].startswith(prefix)]:
                del self._cache[key]

    @staticmethod
    def _who(credentials: Any) -> str:
        if credentials is None:
            return ""
        return f"{credentials.access_key_id}@{credentials.endpoint_url}"

    def record(self, spec: CompressedModelSpec, credentials: Any) -> SourceRecord | None:
        from modelpress.sources import record_uri
        from modelpress.storage import read_json

        where = record_uri(spec.storage.uri, spec.source.to_wire())
        key = (self._who(credentials), where)
        cached = self._cached(key)
        if cached is not None:
            return cached
        try:
            data = read_json(where, credentials=credentials)
        except StorageError as error:
            raise RecordError(str(error), uri=where) from None
        if data is None:
            return None
        try:
            record = SourceRecord.from_json(data)
        except (KeyError, TypeError, AttributeError):
            raise RecordError(
                f"the source record {where} is malformed (it needs id, revision, uri and key): "
                "delete it to fetch the base model again",
                uri=where,
            ) from None
        self._remember(key, record)
        return record

    def artifact(self, uri: str, credentials: Any, with_config: bool = False) -> Artifact | None:
        from modelpress.storage import open_store, read_manifest

        key = (self._who(credentials), uri)
        cached = self._cached(key)
        if cached is not None:
            return cached
        manifest = read_manifest(uri, credentials=credentials)
        if manifest is None:
            return None
        config = None
        entry = manifest.file("config.json") if with_config else None
        if entry is not None:
            raw = open_store(uri, credentials).get_bytes(entry.key)
            try:
                config = json.loads(raw) if raw else None
            except ValueError:
                config = None
        artifact = self._shared_config(Artifact.from_manifest(uri, manifest, config))
        self._remember(key, artifact)
        return artifact

    def _shared_config(self, artifact: Artifact) -> Artifact:
        """The artifact with its config.json shared with every other artifact that has
        the same one (variants of one base model do): one copy in memory, not one per
        model. Configs are read-only from here on."""
        if artifact.config is None:
            return artifact
        text = json.dumps(artifact.config, sort_keys=True)
        with self._lock:
            if len(self._configs) >= self._max_entries:
                self._configs.clear()
            shared = self._configs.setdefault(text, artifact.config)
        metadata = artifact.metadata
        if metadata.model_config_ is not None:
            metadata = metadata.model_copy(update={"model_config_": shared})
        return replace(artifact, config=shared, metadata=metadata)

    def view(
        self,
        spec: CompressedModelSpec,
        credentials: Any,
        locate: Any,
        extra_keys: Iterable[str] = (),
    ) -> StoreView:
        """The source record, the base model and the variants' artifacts.

        `locate(record)` gives {variant: (key, uri)} once the base key is known.
        """
        record = self.record(spec, credentials)
        if record is None:
            return StoreView(None, None, {})
        base = self.artifact(record.uri, credentials, with_config=True)
        if base is None:
            return StoreView(record, None, {})
        wanted = {key: uri for key, uri in locate(record).values()}
        for key in extra_keys:
            wanted.setdefault(key, artifact_uri(spec, key))
        artifacts = {}
        corrupt = {}
        for key, uri in wanted.items():
            try:
                found = self.artifact(uri, credentials)
            except (
                StoreUnavailableError,
                CredentialsError,
                AccessDeniedError,
                BucketNotFoundError,
            ):
                raise  # the store itself: nothing about any variant is known
            except StorageError as error:
                corrupt[key] = str(error)  # this artifact only: the others go on
                continue
            if found is not None:
                artifacts[key] = found
        return StoreView(record, base, artifacts, corrupt)
