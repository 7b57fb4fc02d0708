"""A small asynchronous Kubernetes client for the few calls the handlers make.

It reuses the credentials kopf logged in with (`kopf.ConnectionInfo`), so the
operator has one identity, one TLS setup and no second client library in memory.
Children are applied with server-side apply (field manager `modelpress`), so a
field the operator stops setting is removed, and nothing else is touched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from modelpress.api.resource import API_VERSION, KIND, PLURAL

FIELD_MANAGER = "modelpress"
log = logging.getLogger(__name__)

#: kind -> (API prefix, plural)
RESOURCES = {
    "Job": ("/apis/batch/v1", "jobs"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "Secret": ("/api/v1", "secrets"),
    "Pod": ("/api/v1", "pods"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    "LeaderWorkerSet": ("/apis/leaderworkerset.x-k8s.io/v1", "leaderworkersets"),
    "JobSet": ("/apis/jobset.x-k8s.io/v1alpha2", "jobsets"),
    KIND: (f"/apis/{API_VERSION}", PLURAL),
}


class ApiError(Exception):
    """A non-success answer from the API server."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def path(
    kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None
) -> str:
    """The API path of a kind's collection or object; all namespaces when `namespace` is None."""
    prefix, plural = RESOURCES[kind]
    scope = f"/namespaces/{quote(namespace)}" if namespace is not None else ""
    result = f"{prefix}{scope}/{plural}"
    if name is not None:
        result += f"/{quote(name)}"
    if subresource is not None:
        result += f"/{subresource}"
    return result


class KubeClient:
    """Calls the API server with the operator's credentials. One per operator."""

    def __init__(
        self,
        connection: Any,
        timeout: float = 60.0,
        on_error: Callable[[int], None] | None = None,
    ) -> None:
        self._connection = connection
        self._on_error = on_error
        """Told the status code of every error answer (for the metrics)."""
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def connection(self) -> Any:
        return self._connection

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            info = self._connection
            headers = dict(info.as_http_headers())
            headers.setdefault("User-Agent", "modelpress-operator")
            auth = None
            if info.username and info.password:
                auth = aiohttp.BasicAuth(info.username, info.password)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=32, ssl=info.as_ssl_context()),
                headers=headers,
                auth=auth,
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def request(
        self,
        method: str,
        url_path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        url = self._connection.server.rstrip("/") + url_path
        if params:
            url += "?" + urlencode(params)
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        session = self._open()
        async with session.request(method, url, data=data, headers=headers) as response:
            text = await response.text()
            if response.status >= 400:
                if self._on_error is not None:
                    self._on_error(response.status)
                try:
                    payload = json.loads(text)
                    reason = payload.get("reason") or response.reason or ""
                    message = payload.get("message") or text
                except (ValueError, AttributeError):
                    reason, message = response.reason or "", text
                raise ApiError(response.status, str(reason), str(message)[:500])
            return json.loads(text) if text else None

    # --- the calls the handlers make ------------------------------------------------------

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", path(kind, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def serves(self, api_path: str) -> bool:
        """Whether the API server serves this API group version (e.g. /apis/keda.sh/v1alpha1)."""
        try:
            await self.request("GET", api_path)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def list(
        self, kind: str, namespace: str, label_selector: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Objects matching every label (checked here too: not every server filters)."""
        selector = ",".join(f"{k}={v}" for k, v in label_selector.items())
        answer = await self.request(
            "GET", path(kind, namespace), params={"labelSelector": selector}
        )
        items = (answer or {}).get("items") or []
        return [
            item
            for item in items
            if all(
                ((item.get("metadata") or {}).get("labels") or {}).get(k) == v
                for k, v in label_selector.items()
            )
        ]

    async def create(self, obj: Mapping[str, Any]) -> bool:
        """Create `obj`; False when an object of that name already exists."""
        metadata = obj["metadata"]
        try:
            await self.request(
                "POST",
                path(obj["kind"], metadata["namespace"]),
                params={"fieldManager": FIELD_MANAGER},
                body=obj,
            )
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        return True

    async def apply(self, obj: Mapping[str, Any]) -> None:
        """Server-side apply `obj` (create or update it to exactly these fields)."""
        metadata = obj["metadata"]
        try:
            await self.request(
                "PATCH",
                path(obj["kind"], metadata["namespace"], metadata["name"]),
                params={"fieldManager": FIELD_MANAGER, "force": "true"},
                body=obj,
                content_type="application/apply-patch+yaml",
            )
        except ApiError as error:
            if error.status != 404:
                raise
            # Servers that do not create on apply (test emulators): create instead.
            if not await self.create(obj):
                await self.request(
                    "PATCH",
                    path(obj["kind"], metadata["namespace"], metadata["name"]),
                    body=obj,
                    content_type="application/merge-patch+json",
                )

    async def delete(
        self, kind: str, namespace: str, name: str, propagation: str = "Background"
    ) -> bool:
        """Delete with its dependents (in the background, or `Foreground`: the object stays
        until they are gone); False when already gone."""
        try:
            await self.request(
                "DELETE",
                path(kind, namespace, name),
                body={"propagationPolicy": propagation},
            )
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def patch_status(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> str | None:
        """Merge-patch the status subresource; the object's new resourceVersion."""
        answer = await self.request(
            "PATCH",
            path(kind, namespace, name, "status"),
            body={"status": patch},
            content_type="application/merge-patch+json",
        )
        return ((answer or {}).get("metadata") or {}).get("resourceVersion")
