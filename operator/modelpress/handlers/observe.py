"""Read the world for the planner: Secrets, the store, and why failed pods ended.

Store reads run in threads (boto3 is synchronous). A committed manifest never
changes (its key is its content), so manifests and source records that were
found are remembered for `storeCacheSeconds`; what was missing is asked again
at every reconcile, since a Job may have just published it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelpress.api.spec import CompressedModelSpec
from modelpress.handlers.kube import ApiError, KubeClient
from modelpress.plan.observed import Artifact, Blocker, SourceRecord
from modelpress.plan.recipes import artifact_uri

SECRET_KEYS_HINT = (
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (optionally AWS_SESSION_TOKEN, "
    "AWS_ENDPOINT_URL, AWS_REGION)"
)


async def storage_credentials(
    client: KubeClient, spec: CompressedModelSpec, namespace: str
) -> tuple[Any, Blocker | None]:
    """(Credentials or None for the ambient AWS environment, blocker). The Secret's
    values stay in memory: never logged, never copied anywhere."""
    from modelpress.storage import Credentials, CredentialsError

    ref = spec.storage.secret_ref
    if ref is None:
        return None, None
    secret = await client.get("Secret", namespace, ref.name)
    if secret is None:
        return None, Blocker(
            "SecretNotFound",
            f"storage Secret {ref.name!r} does not exist in namespace {namespace}: create it "
            f"with keys {SECRET_KEYS_HINT}, or fix spec.storage.secretRef.name",
        )
    try:
        return Credentials.from_secret_data(secret.get("data") or {}), None
    except CredentialsError as error:
        return None, Blocker("InvalidSecret", f"storage Secret {ref.name!r}: {error}")


async def hf_token_blocker(
    client: KubeClient, spec: CompressedModelSpec, namespace: str
) -> Blocker | None:
    """Why the fetch Job could not read its Hub token, or None."""
    hub = spec.source.huggingface
    if hub is None or hub.token_secret_ref is None:
        return None
    ref = hub.token_secret_ref
    secret = await client.get("Secret", namespace, ref.name)
    if secret is None:
        return Blocker(
            "SecretNotFound",
            f"Hub token Secret {ref.name!r} does not exist in namespace {namespace}: create it "
            f"with the token under key {ref.key!r}, or fix "
            "spec.source.huggingface.tokenSecretRef",
        )
    if ref.key not in (secret.get("data") or {}):
        return Blocker(
            "SecretNotFound",
            f"Hub token Secret {ref.name!r} has no key {ref.key!r}: add it, or set "
            "spec.source.huggingface.tokenSecretRef.key to the key that holds the token",
        )
    return None


def terminated_message(pod: Mapping[str, Any]) -> str | None:
    """What a failed pod's container said as it ended (termination message or reason)."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        for state_name in ("state", "lastState"):
            terminated = (container.get(state_name) or {}).get("terminated")
            if terminated and terminated.get("exitCode", 0) != 0:
                reason = terminated.get("reason") or "Error"
                text = f"exit code {terminated.get('exitCode')} ({reason})"
                said = _last_words(terminated.get("message") or "")
                return f"{text}: {said}" if said else text
    if status.get("reason") or status.get("message"):
        return f"{status.get('reason', '')} {status.get('message', '')}".strip()
    return None


def _last_words(message: str) -> str:
    """The reason in a termination message: the `error` of the JSON line the
    modelpress commands write, else the message's last line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    try:
        report = json.loads(lines[-1])
    except ValueError:
        return lines[-1][:1000]
    if isinstance(report, dict) and report.get("error"):
        reason = f"{report['reason']}: " if report.get("reason") else ""
        return f"{reason}{report['error']}"[:1000]
    return lines[-1][:1000]


async def job_messages(
    client: KubeClient, namespace: str, job_names: Iterable[str]
) -> dict[str, str]:
    """The last failed pod's message for each named Job."""
    found: dict[str, str] = {}
    for name in job_names:
        try:
            pods = await client.list("Pod", namespace, {"job-name": name})
        except ApiError:
            continue
        failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        failed.sort(key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
        for pod in reversed(failed):
            message = terminated_message(pod)
            if message:
                found[name] = message
                break
    return found


@dataclass(frozen=True)
class StoreView:
    source: SourceRecord | None
    base: Artifact | None
    artifacts: dict[str, Artifact]


class StoreReader:
    """Reads source records and manifests, remembering what was found."""

    def __init__(self, cache_seconds: float) -> None:
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _cached(self, key: tuple[str, str]) -> Any | None:
        with self._lock:
            entry = self._cache.get(key)
        if entry is None or time.monotonic() - entry[0] > self._cache_seconds:
            return None
        return entry[1]

    def _remember(self, key: tuple[str, str], value: Any) -> None:
        with self._lock:
            self._cache[key] = (time.monotonic(), value)

    def forget(self, uris: Iterable[str]) -> None:
        """Drop remembered artifacts (after they were deleted)."""
        targets = set(uris)
        with self._lock:
            for key in [k for k in self._cache if k[1] in targets]:
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
        data = read_json(where, credentials=credentials)
        if data is None:
            return None
        record = SourceRecord.from_json(data)
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
        if with_config and manifest.file("config.json") is not None:
            raw = open_store(uri, credentials).get_bytes("config.json")
            try:
                config = json.loads(raw) if raw else None
            except ValueError:
                config = None
        artifact = Artifact.from_manifest(uri, manifest, config)
        self._remember(key, artifact)
        return artifact

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
        for key, uri in wanted.items():
            found = self.artifact(uri, credentials)
            if found is not None:
                artifacts[key] = found
        return StoreView(record, base, artifacts)

    async def view_async(self, *args: Any, **kwargs: Any) -> StoreView:
        return await asyncio.to_thread(self.view, *args, **kwargs)
