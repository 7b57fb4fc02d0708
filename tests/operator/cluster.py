"""An emulated Kubernetes API for the operator's end-to-end tests and benchmark.

kmock's `KubernetesEmulator` is a real HTTP server that stores objects and
serves watches. It leaves a few things to the test harness, which this module
adds the way the API server does them (tests/operator/test_cluster.py holds each
to the API server's documented behaviour):

- CompressedModels are admitted as the API server admits them
  (`modelpress.api.apiserver`): nulls and unknown fields pruned (refused with
  `fieldValidation=Strict`, as kubectl apply asks), CRD defaults applied, schema,
  CEL and metadata validated; a refusal is a 422 naming the field;
- JobSets and LeaderWorkerSets the operator writes are admitted through their
  published CRD schemas (`tests.crds`): a write their API would refuse is a 422;
- the status subresource: a write to the object ignores `status`, a write to
  `/status` changes only `status`;
- optimistic concurrency: a write carrying a stale `metadata.resourceVersion` is a
  409 Conflict;
- server-side apply (`application/apply-patch+yaml`): each field manager owns the
  fields it applied; a field it applies no more is removed (unless another manager
  owns it), and a field another manager owns with another value is a 409 Conflict
  unless `force=true`;
- `uid`, `creationTimestamp`, `generation` (1 on create, +1 when `spec` changes)
  and `resourceVersion` (one counter for the whole server);
- resource discovery: the CRD, namespaces and every kind the operator touches are
  declared, or kopf starts no watchers; an API not declared (KEDA's, unless asked
  for) answers 404 to every request, as on a cluster without it;
- lookups by name in constant time (the emulator scans every object otherwise,
  which makes a thousand-model benchmark measure the emulator, not the operator);
- a bounded history per object (the emulator keeps every version by default);
- every status written to a CompressedModel checked against the CRD's status schema:
  a write the API server would refuse is a 422, and kept in `status_violations` for
  the tests to assert on.

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
from tests import crds

from modelpress.api.apiserver import admit, status_problems
from modelpress.api.crd import crd
from modelpress.plan.conditions import merge_patch

GROUP_VERSION_PLURAL = "modelpress.dev/v1alpha1/compressedmodels"
JOBS = "batch/v1/jobs"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
POLICIES = "networking.k8s.io/v1/networkpolicies"
SECRETS = "v1/secrets"
PODS = "v1/pods"
EVENTS = "v1/events"
HPAS = "autoscaling/v2/horizontalpodautoscalers"
SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"
LEADER_WORKER_SETS = "leaderworkerset.x-k8s.io/v1/leaderworkersets"
JOB_SETS = "jobset.x-k8s.io/v1alpha2/jobsets"
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
    POLICIES: {"kind": "NetworkPolicy", "singular": "networkpolicy", "namespaced": True},
    SECRETS: {"kind": "Secret", "singular": "secret", "namespaced": True},
    PODS: {"kind": "Pod", "singular": "pod", "namespaced": True},
    EVENTS: {"kind": "Event", "singular": "event", "namespaced": True},
    HPAS: {
        "kind": "HorizontalPodAutoscaler",
        "singular": "horizontalpodautoscaler",
        "namespaced": True,
        "subresources": ["status"],
    },
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
    watch: bool = False

    @property
    def by_operator(self) -> bool:
        return self.agent.startswith(("kopf/", "modelpress-operator"))

    def permission(self) -> tuple[str, str, str] | None:
        """(apiGroup, resource[/subresource], verb) as RBAC names it; None for discovery."""
        parts = [p for p in self.path.split("/") if p]
        if parts[:1] == ["api"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
        else:
            return None
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            rest = rest[2:]
        if not rest:
            return None
        resource = rest[0] + (f"/{rest[2]}" if len(rest) >= 3 else "")
        named = len(rest) >= 2
        verb = {
            "GET": "get" if named else ("watch" if self.watch else "list"),
            "POST": "create",
            "PATCH": "patch",
            "PUT": "update",
            "DELETE": "delete",
        }[self.method]
        return group, resource, verb


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
    _last_version: int = attrs.field(default=0, init=False)
    seen: list[Seen] = attrs.field(factory=list, init=False)
    """Every request served: method, path and user agent (kmock keeps only recent ones)."""
    admission: bool = True
    """Admit CompressedModel writes as the API server does (off in benchmarks, which
    measure the operator, not this emulator)."""
    status_violations: list[str] = attrs.field(factory=list, init=False)
    """`name: problem` for each status write the API server would reject or prune."""
    owners: dict[tuple[Any, ...], dict[str, set[tuple[str, ...]]]] = attrs.field(
        factory=dict, init=False
    )
    """Server-side apply: by object, each field manager's applied fields (leaf paths)."""
    keda: bool = False
    """Serve KEDA's keda.sh/v1alpha1 (as a cluster with KEDA installed does)."""
    lws: bool = False
    """Serve LeaderWorkerSet's leaderworkerset.x-k8s.io/v1."""
    jobset: bool = False
    """Serve JobSet's jobset.x-k8s.io/v1alpha2."""
    listeners: list[Any] = attrs.field(factory=list, init=False)
    """Callables told `(resource, namespace, name)` after each write, for stand-ins that
    react to changes instead of scanning every object."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, info in _RESOURCES.items():
            self.resources[key] = {"verbs": _VERBS, **info}
        optional = {
            SCALED_OBJECTS: ("ScaledObject", "scaledobject", self.keda),
            LEADER_WORKER_SETS: ("LeaderWorkerSet", "leaderworkerset", self.lws),
            JOB_SETS: ("JobSet", "jobset", self.jobset),
        }
        for key, (kind, singular, served) in optional.items():
            if served:
                self.resources[key] = {
                    "verbs": _VERBS,
                    "kind": kind,
                    "singular": singular,
                    "namespaced": True,
                    "subresources": ["status"],
                }
        definition = crd()
        self.objects[
            "apiextensions.k8s.io/v1/customresourcedefinitions",
            None,
            definition["metadata"]["name"],
        ] = definition

    async def _handle(self, request: Any) -> Any:
        method = getattr(request.method, "value", str(request.method))
        agent = request.headers.get("User-Agent", "")
        watch = request.url.query.get("watch") in ("true", "1")
        self.seen.append(Seen(method, request.url.path, agent, watch))
        resource = request.resource
        if (
            resource is not None
            and resource.plural
            and _resource_name(resource) not in self.resources
        ):
            # An API the cluster does not serve (a CRD not installed): 404 for every verb.
            return _refusal(404, "NotFound", "the server could not find the requested resource")
        if request.resource is not None and isinstance(request.data, dict):
            refusal = self._api_server_rules(request)
            if refusal is not None:
                return refusal
            if request.action == kmock.action.CREATE:
                self._stamp_create(request.data)
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._stamp_update(request)
        elif request.action == kmock.action.UPDATE and isinstance(request.data, list):
            # A JSON patch (kopf's finalizers) is a write too: a new resourceVersion.
            version = self._next_version()
            request.data.append(
                {"op": "add", "path": "/metadata/resourceVersion", "value": version}
            )
        try:
            response = await super()._handle(request)
        finally:
            # kmock matches each request against every request it retained; keep only
            # those in flight, or serving a long run becomes quadratic.
            with contextlib.suppress(ValueError):
                self._requests.remove(request)
        if request.resource is not None and request.name is not None:
            self._trim(request)
        if request.resource is not None and request.action in _WRITES:
            name = request.name or (request.data or {}).get("metadata", {}).get("name")
            namespace = request.namespace or (request.data or {}).get("metadata", {}).get(
                "namespace"
            )
            for listener in self.listeners:
                listener(_resource_name(request.resource), namespace, name)
        return response

    # --- what the API server does before it stores a write -------------------------------

    def _api_server_rules(self, request: Any) -> Any:
        """Rewrite `request.data` so kmock stores what the API server would, or refuse."""
        current = None
        if request.action == kmock.action.UPDATE and request.name is not None:
            found = self._find(request.resource, request.namespace, request.name)
            current = found.raw if found is not None and not found.deleted else None
        if current is not None:
            wanted = (request.data.get("metadata") or {}).get("resourceVersion")
            have = (current.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != have:
                return _refusal(
                    409,
                    "Conflict",
                    f"the object has been modified (resourceVersion {wanted} is stale, now "
                    f"{have}); please apply your changes to the latest version and try again",
                )
            if "apply-patch" in request.headers.get("Content-Type", ""):
                refusal = self._server_side_apply(request, current)
                if refusal is not None:
                    return refusal
        if not self.admission:
            return None
        data = request.data
        if isinstance(data, dict) and data.get("kind") in crds.FILES and "spec" in data:
            problems = crds.problems(data)
            if problems:
                return _refusal(422, "Invalid", "; ".join(str(p) for p in problems))
        if _resource_name(request.resource) != GROUP_VERSION_PLURAL:
            return None
        return self._admit_model(request, current)

    def _admit_model(self, request: Any, current: dict[str, Any] | None) -> Any:
        if request.subresource == "status":
            if current is None:
                return None
            status = kmock_dicts.patch_dict(
                copy.deepcopy(current.get("status") or {}), request.data.get("status") or {}
            )
            problems = status_problems(dict(status))
            if problems:
                self.status_violations += [f"{request.name}: {p}" for p in problems]
                return _refusal(422, "Invalid", "; ".join(str(p) for p in problems))
            _replace_data(request, {"status": request.data.get("status") or {}})
            return None
        strict = request.params.get("fieldValidation") == "Strict"
        if current is None:
            wanted = {k: v for k, v in request.data.items() if k != "status"}
        else:
            merged = kmock_dicts.patch_dict(copy.deepcopy(current), request.data)
            wanted = {k: v for k, v in merged.items() if k != "status"}
        admission = admit(wanted, strict=strict)
        if not admission.accepted:
            return _refusal(422, "Invalid", "; ".join(str(p) for p in admission.problems))
        stored = dict(admission.stored)
        if current is None:
            _replace_data(request, stored)
            return None
        if "status" in current:
            stored["status"] = current["status"]
        _replace_data(request, merge_patch(current, stored) or {"metadata": {}})
        return None

    def _server_side_apply(self, request: Any, current: dict[str, Any]) -> Any:
        manager = request.params.get("fieldManager") or "unknown"
        force = request.params.get("force") == "true"
        config = request.data
        key = (_resource_name(request.resource), request.namespace, request.name)
        owners = self.owners.setdefault(key, {})
        applied = set(_leaf_paths(config))
        conflicts = [
            (other, path)
            for other, paths in owners.items()
            if other != manager
            for path in applied & paths
            if _at(current, path) != _at(config, path)
        ]
        if conflicts and not force:
            listed = ", ".join(f".{'.'.join(p)} (owned by {m})" for m, p in conflicts[:5])
            return _refusal(409, "Conflict", f"Apply failed with conflicts: {listed}")
        for other, paths in owners.items():
            if other != manager:
                paths -= applied  # forced: the applier takes the fields over
        others = set().union(*(p for m, p in owners.items() if m != manager))
        result = copy.deepcopy(current)
        for path in owners.get(manager, set()) - applied - others:
            _remove(result, path)
        result = dict(kmock_dicts.patch_dict(result, config))
        owners[manager] = applied
        _replace_data(request, merge_patch(current, result) or {"metadata": {}})
        return None

    def _stamp_create(self, data: dict[str, Any]) -> None:
        metadata = data.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:8]
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = _now()
        metadata["generation"] = 1
        metadata["resourceVersion"] = self._next_version()

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
        metadata["resourceVersion"] = self._next_version()

    def _next_version(self) -> str:
        self._last_version = next(self._versions)
        return str(self._last_version)

    # --- lists and watches: a watch from a list's resourceVersion replays nothing older ----

    async def _serve_list(self, request: Any) -> Any:
        answer = await super()._serve_list(request)
        answer["metadata"]["resourceVersion"] = str(self._last_version)
        return answer

    async def _serve_watch(self, request: Any) -> Any:
        """kmock's watch, except that it starts where the client's list ended, as the
        API server's does: objects unchanged since that resourceVersion are not sent
        again (a stale copy would make clients act twice)."""
        yield b""
        since = request.url.query.get("resourceVersion")
        since_version = int(since) if since and since.isdigit() else 0
        async with self._lock:
            objs = [o for o in self._KubernetesEmulator__get_objs(request, False) if not o.deleted]
            events = [
                {"type": "ADDED", "object": obj.raw}
                for obj in objs
                if int(obj.raw.get("metadata", {}).get("resourceVersion") or 0) > since_version
            ]
        for event in events:
            yield event
        check = self._KubernetesEmulator__check
        async for event in self._buses[request.resource]:
            metadata = event.get("object", {}).get("metadata", {})
            if check(
                request, request.resource, metadata.get("namespace"), metadata.get("name"), False
            ):
                yield event

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


def _replace_data(request: Any, data: dict[str, Any]) -> None:
    """kmock's requests are frozen; their body is a dict, changed in place."""
    request.data.clear()
    request.data.update(data)


def _refusal(code: int, reason: str, message: str) -> Any:
    """An API server error answer (a Status object)."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }
    return aiohttp.web.json_response(body, status=code)


def _leaf_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The fields a server-side apply configuration sets (lists count as one field, as
    for atomic lists; metadata identity is owned by no one)."""
    if isinstance(value, dict) and value:
        paths = []
        for key, sub in value.items():
            if prefix == () and key in ("apiVersion", "kind"):
                continue
            if prefix == ("metadata",) and key in ("name", "namespace", "resourceVersion"):
                continue
            paths += _leaf_paths(sub, (*prefix, key))
        return paths
    return [prefix] if prefix else []


def _at(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _remove(value: dict[str, Any], path: tuple[str, ...]) -> None:
    """Remove the field at `path`, and the mappings it leaves empty."""
    parents = [value]
    for part in path[:-1]:
        child = parents[-1].get(part)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for parent, part in zip(reversed(parents[:-1]), reversed(path[:-1]), strict=True):
        if parent.get(part) == {}:
            del parent[part]


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
async def running_cluster(
    admission: bool = True, keda: bool = False, lws: bool = False, jobset: bool = False
) -> AsyncIterator[tuple[Cluster, str]]:
    """The emulator served on 127.0.0.1; yields it and its URL."""
    emulator = Cluster(admission=admission, keda=keda, lws=lws, jobset=jobset)
    async with emulator as cluster, kmock.Server(cluster) as server:
        yield cluster, str(server.url).rstrip("/")
