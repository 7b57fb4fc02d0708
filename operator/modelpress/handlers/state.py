"""What one running operator keeps in memory: its configuration, its API client,
the store cache, the models' latest bodies and the work queue.

Nothing here is needed to be correct after a restart: it only saves work.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpress.config import OperatorConfig
from modelpress.handlers.deadline import EndpointGuard
from modelpress.handlers.kube import KubeClient
from modelpress.handlers.metrics import OperatorMetrics
from modelpress.handlers.workqueue import WorkQueue
from modelpress.storeview import StoreReader

ModelKey = tuple[str, str]
POD_MESSAGES_KEPT = 10_000
KEDA_API = "/apis/keda.sh/v1alpha1"
#: A kind the cluster did not serve (KEDA not installed) is tried again after this long.
MISSING_KIND_SECONDS = 300.0


@dataclass(frozen=True)
class WrittenStatus:
    """A status write on its way back through the watch."""

    based_on: str | None
    """The resourceVersion of the object the write was computed from."""
    result: str | None
    """The resourceVersion the write produced."""
    status: dict[str, Any]


@dataclass
class OperatorState:
    config: OperatorConfig
    login: Callable[..., Any] | None = None
    """Replaces the service-account/kubeconfig login (tests point it at an emulator)."""
    store: StoreReader = field(init=False)
    guard: EndpointGuard = field(init=False)
    client: KubeClient | None = None
    models: dict[ModelKey, bytes] = field(default_factory=dict)
    """The latest body of each model as the watch delivered it, kept as compressed JSON
    (a twentieth of the parsed object's memory), read back once per reconcile."""
    queue: WorkQueue[ModelKey] = field(default_factory=WorkQueue)
    written: dict[str, WrittenStatus] = field(default_factory=dict)
    """By object uid, a status this operator wrote that the watch has not brought back
    yet (only until it does: see `status_base`)."""
    retries: dict[str, str] = field(default_factory=dict)
    """The modelpress.dev/retry annotation last seen, by object uid (only where set)."""
    conflicts: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    """By object uid: (kind, name) of objects in the way that are not the model's own."""
    pod_messages: OrderedDict[tuple[str, str, int], str] = field(default_factory=OrderedDict)
    """Failed pods' messages by (namespace, Job, failed count), the most recent
    POD_MESSAGES_KEPT only."""
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    keda: tuple[float, bool] | None = None
    """(when looked, whether the cluster serves KEDA's API)."""
    missing_kinds: dict[str, float] = field(default_factory=dict)
    """Kinds whose creation the API server answered 404 (their API is not installed), with
    when: models that need one report it instead of failing every reconcile."""

    def __post_init__(self) -> None:
        self.store = StoreReader(self.config.store_cache_seconds, self.config.store_cache_entries)
        self.guard = EndpointGuard(self.config.store_deadline_seconds)

    def keep_model(self, key: ModelKey, body: Mapping[str, Any]) -> None:
        text = json.dumps(body, separators=(",", ":")).encode()
        self.models[key] = zlib.compress(text, 1)

    def model(self, key: ModelKey) -> dict[str, Any] | None:
        packed = self.models.get(key)
        return None if packed is None else json.loads(zlib.decompress(packed))

    async def settled(self, namespace: str, name: str) -> None:
        """Wait until no reconcile of the model runs, and queue none (it is being deleted)."""
        key = (namespace, name)
        self.queue.forget(key)
        while self.queue.busy(key):
            await asyncio.sleep(0.05)

    def remember_pod_message(self, key: tuple[str, str, int], message: str) -> None:
        self.pod_messages[key] = message
        while len(self.pod_messages) > POD_MESSAGES_KEPT:
            self.pod_messages.popitem(last=False)

    def status_base(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The status the next write is computed against: the live one, unless the object
        at hand is the very one this operator's last write replaced (the watch lags), in
        which case that write. Once the watch brings anything newer, the record is dropped:
        a status someone else wrote after ours is seen, and memory stays bounded."""
        metadata = body.get("metadata") or {}
        uid = metadata.get("uid") or ""
        written = self.written.get(uid)
        if written is not None:
            if metadata.get("resourceVersion") == written.based_on:
                return written.status
            del self.written[uid]
        return dict(body.get("status") or {})

    def caught_up(self, body: Mapping[str, Any]) -> None:
        """The watch brought this object: drop the record of a write it already shows."""
        metadata = body.get("metadata") or {}
        uid = metadata.get("uid") or ""
        written = self.written.get(uid)
        if written is not None and metadata.get("resourceVersion") == written.result:
            del self.written[uid]

    def remember_retry(self, uid: str, retry: str | None) -> None:
        if retry is None:
            self.retries.pop(uid, None)
        else:
            self.retries[uid] = retry

    def forget(self, namespace: str, name: str, uid: str | None) -> None:
        self.models.pop((namespace, name), None)
        self.queue.forget((namespace, name))
        if uid:
            self.written.pop(uid, None)
            self.metrics.model_gone(uid)
            self.conflicts.pop(uid, None)
            self.retries.pop(uid, None)

    def kind_missing(self, kind: str) -> None:
        self.missing_kinds[kind] = time.monotonic()

    def kinds_missing(self) -> frozenset[str]:
        """Kinds seen missing recently; after MISSING_KIND_SECONDS they are tried again."""
        now = time.monotonic()
        for kind, seen in list(self.missing_kinds.items()):
            if now - seen > MISSING_KIND_SECONDS:
                del self.missing_kinds[kind]
        return frozenset(self.missing_kinds)

    async def keda_served(self) -> bool:
        """Whether the cluster serves keda.sh/v1alpha1, looked up again every
        MISSING_KIND_SECONDS (KEDA installed later is found)."""
        now = time.monotonic()
        if self.keda is None or now - self.keda[0] > MISSING_KIND_SECONDS:
            self.keda = (now, await self.api().serves(KEDA_API))
        return self.keda[1]

    def api(self) -> KubeClient:
        if self.client is None:
            raise RuntimeError("the operator has not logged in to the API server yet")
        return self.client
