"""An emulated Kubernetes API for the operator's end-to-end tests and benchmark.

kmock's `KubernetesEmulator` is a real HTTP server that stores objects and
serves watches. It leaves a few things to the test harness, which this module
adds the way the API server does them:

- `uid`, `creationTimestamp`, `generation` (1 on create, +1 when `spec` changes)
  and `resourceVersion` (one counter for the whole server);
- resource discovery: the CRD, namespaces and every kind the operator touches are
  declared, or kopf starts no watchers;
- lookups by name in constant time (the emulator scans every object otherwise,
  which makes a thousand-model benchmark measure the emulator, not the operator);
- a bounded history per object (the emulator keeps every version by default);
- every status written to a CompressedModel checked against the CRD's status schema
  (what the API server would reject or prune), each problem kept in
  `status_violations` for the tests to assert on.

The operator must run cluster-wide against it: listing namespaces answers 500.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import dicts as kmock_dicts

from modelpress.api.admission import status_problems
from modelpress.api.crd import crd

GROUP_VERSION_PLURAL = "modelpress.dev/v1alpha1/compressedmodels"
JOBS = "batch/v1/jobs"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
SECRETS = "v1/secrets"
PODS = "v1/pods"
EVENTS = "v1/events"
HISTORY_KEPT = 3

_VERBS = ["list", "watch", "get", "create", "patch", "update", "delete"]
_RESOURCES: dict[str, dict[str, Any]] = {
    GROUP_VERSION_PLURAL: {
        "kind": "CompressedModel",
        "singular": "compressedmodel",
        "namespaced": True,
        "subresources": ["status"],
        "shortnames": ["cm", "cmodel"],
    },
    JOBS: {"kind": "Job", "singular": "job", "namespaced": True, "subresources": ["status"]},
    DEPLOYMENTS: {
        "kind": "Deployment",
        "singular": "deployment",
        "namespaced": True,
        "subresources": ["status"],
    },
    SERVICES: {"kind": "Service", "singular": "service", "namespaced": True},
    SECRETS: {"kind": "Secret", "singular": "secret", "namespaced": True},
    PODS: {"kind": "Pod", "singular": "pod", "namespaced": True},
    EVENTS: {"kind": "Event", "singular": "event", "namespaced": True},
    "v1/namespaces": {"kind": "Namespace", "singular": "namespace", "namespaced": False},
    "apiextensions.k8s.io/v1/customresourcedefinitions": {
        "kind": "CustomResourceDefinition",
        "singular": "customresourcedefinition",
        "namespaced": False,
    },
}


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request the emulator served."""

    method: str
    path: str
    agent: str


_WRITES = (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)


def _resource_name(resource: Any) -> str:
    prefix = f"{resource.group}/{resource.version}" if resource.group else resource.version
    return f"{prefix}/{resource.plural}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class _DirectDispatch(kmock.RawHandler):
    """Serves object reads and writes with the emulator's own handlers directly.

    kmock matches every request against its reactions; this emulator declares none
    beyond its built-in fallbacks, so matching only costs time (most of it, in a
    thousand-model run). Watches and discovery still go through kmock.
    """

    async def _handle(self, request: Any) -> Any:
        direct = _DIRECT.get(request.action)
        resource = request.resource
        if direct is not None and resource is not None and resource.plural is not None:
            payload = await getattr(self, direct)(request)
            return aiohttp.web.json_response(payload)
        return await super()._handle(request)


_DIRECT = {
    kmock.action.LIST: "_serve_list",
    kmock.action.FETCH: "_serve_fetch",
    kmock.action.CREATE: "_serve_create",
    kmock.action.UPDATE: "_serve_update",
    kmock.action.DELETE: "_serve_delete",
}


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator, _DirectDispatch):
    """The emulator plus identity, generations, resource versions and fast lookups."""

    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    seen: list[Seen] = attrs.field(factory=list, init=False)
    """Every request served: method, path and user agent (kmock keeps only recent ones)."""
    check_status: bool = True
    """Check every CompressedModel status write against the CRD (off for benchmarks)."""
    status_violations: list[str] = attrs.field(factory=list, init=False)
    """`name: problem` for each status write the API server would reject or prune."""
    listeners: list[Any] = attrs.field(factory=list, init=False)
    """Callables told `(resource, namespace, name)` after each write, for stand-ins that
    react to changes instead of scanning every object."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, info in _RESOURCES.items():
            self.resources[key] = {"verbs": _VERBS, **info}
        definition = crd()
        self.objects[
            "apiextensions.k8s.io/v1/customresourcedefinitions",
            None,
            definition["metadata"]["name"],
        ] = definition

    async def _handle(self, request: Any) -> Any:
        method = getattr(request.method, "value", str(request.method))
        self.seen.append(Seen(method, request.url.path, request.headers.get("User-Agent", "")))
        if request.resource is not None and isinstance(request.data, dict):
            if request.action == kmock.action.CREATE:
                self._stamp_create(request.data)
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._stamp_update(request)
        try:
            response = await super()._handle(request)
        finally:
            # kmock matches each request against every request it retained; keep only
            # those in flight, or serving a long run becomes quadratic.
            with contextlib.suppress(ValueError):
                self._requests.remove(request)
        if request.resource is not None and request.name is not None:
            self._trim(request)
            if self.check_status and request.subresource == "status":
                self._check_status(request)
        if request.resource is not None and request.action in _WRITES:
            name = request.name or (request.data or {}).get("metadata", {}).get("name")
            namespace = request.namespace or (request.data or {}).get("metadata", {}).get(
                "namespace"
            )
            for listener in self.listeners:
                listener(_resource_name(request.resource), namespace, name)
        return response

    def _stamp_create(self, data: dict[str, Any]) -> None:
        metadata = data.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:8]
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = _now()
        metadata["generation"] = 1
        metadata["resourceVersion"] = str(next(self._versions))

    def _stamp_update(self, request: Any) -> None:
        current = self._find(request.resource, request.namespace, request.name)
        if current is None or current.deleted:
            return
        data = request.data
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = data["metadata"] = {}
        if request.subresource is None and isinstance(data.get("spec"), dict):
            before = current.get("spec") or {}
            after = kmock_dicts.patch_dict(copy.deepcopy(before), data["spec"])
            if after != before:
                metadata["generation"] = int(current.get("metadata", {}).get("generation") or 1) + 1
        metadata["resourceVersion"] = str(next(self._versions))

    def _check_status(self, request: Any) -> None:
        if _resource_name(request.resource) != GROUP_VERSION_PLURAL:
            return
        obj = self._find(request.resource, request.namespace, request.name)
        if obj is None or obj.deleted:
            return
        status = obj.last.raw.get("status") or {}
        self.status_violations += [f"{request.name}: {p}" for p in status_problems(status)]

    def _find(self, resource: Any, namespace: str | None, name: str) -> Any:
        return self._objects._objects.get((resource, namespace, name))  # type: ignore[attr-defined]

    def _trim(self, request: Any) -> None:
        obj = self._find(request.resource, request.namespace, request.name)
        if obj is not None and len(obj.history) > HISTORY_KEPT:
            del obj.history[:-HISTORY_KEPT]

    def _KubernetesEmulator__get_objs(self, request: Any, strict: bool) -> list[Any]:
        if request.name is not None and request.namespace is not None:
            found = self._find(request.resource, request.namespace, request.name)
            return [found] if found is not None else []
        objs = []
        for (resource, namespace, name), obj in self._objects.items():
            if resource != request.resource:
                continue
            if request.namespace is not None and namespace != request.namespace:
                continue
            if strict and request.namespace is None and namespace is not None:
                continue
            if request.name is not None and name != request.name:
                continue
            objs.append(obj)
        return objs

    # --- conveniences for tests -----------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:  # type: ignore[override]
        """The live object as a plain dict, or None."""
        obj = self._find(kmock.resource(resource), namespace, name)
        if obj is None or obj.deleted:
            return None
        return copy.deepcopy(obj.last.raw)

    def live(self, resource: str) -> list[dict[str, Any]]:
        """The live objects of a resource, not copied: read them, never change them."""
        wanted = kmock.resource(resource)
        return [
            obj.last.raw
            for (res, _, _), obj in list(self._objects.items())
            if res == wanted and not obj.deleted
        ]

    def all(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        wanted = kmock.resource(resource)
        return [
            copy.deepcopy(obj.last.raw)
            for (res, ns, _), obj in list(self._objects.items())
            if res == wanted and not obj.deleted and (namespace is None or ns == namespace)
        ]


def kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig pointing at `server` with a dummy token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "emulated",
        "clusters": [{"name": "emulated", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "emulated-token"}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "tester"}}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def running_cluster(check_status: bool = True) -> AsyncIterator[tuple[Cluster, str]]:
    """The emulator served on 127.0.0.1; yields it and its URL."""
    async with Cluster(check_status=check_status) as cluster, kmock.Server(cluster) as server:
        yield cluster, str(server.url).rstrip("/")
