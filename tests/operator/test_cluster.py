"""The emulated cluster behaves like the API server where the operator depends on it.

Each test names the documented behaviour it holds the emulator to (Kubernetes
API concepts: CRD defaulting and pruning, the status subresource, optimistic
concurrency, server-side apply).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.operator.cluster import Cluster, running_cluster

NS = "ml"
MODELS = f"/apis/modelpress.dev/v1alpha1/namespaces/{NS}/compressedmodels"
SERVICES = f"/api/v1/namespaces/{NS}/services"
MODEL: dict[str, Any] = {
    "apiVersion": "modelpress.dev/v1alpha1",
    "kind": "CompressedModel",
    "metadata": {"name": "tiny", "namespace": NS},
    "spec": {
        "source": {"uri": "s3://models/base/tiny/"},
        "storage": {"uri": "s3://artifacts/"},
        "variants": [{"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}],
        "evaluation": {"dataset": {"uri": "s3://data/eval.txt"}},
    },
}


async def _send(
    cluster: Cluster,
    method: str,
    path: str,
    body: Any,
    *,
    params: dict[str, str] | None = None,
    content_type: str = "application/merge-patch+json",
) -> tuple[int, dict[str, Any]]:
    call = getattr(cluster, method)
    headers = {"Content-Type": content_type} if method == "patch" else {}
    async with call(path, json=body, params=params or {}, headers=headers) as response:
        return response.status, await response.json()


async def test_crd_defaults_are_applied_and_nulls_pruned_on_create() -> None:
    """CRD defaulting: defaults fill absent fields and null values of non-nullable
    fields are pruned first (Helm renders `key:` as null)."""
    manifest = copy.deepcopy(MODEL)
    manifest["spec"]["serving"] = None
    manifest["spec"]["compression"] = {"backoffLimit": None}
    async with running_cluster() as (cluster, _):
        status, stored = await _send(cluster, "post", MODELS, manifest)
    assert status in (200, 201), stored
    assert stored["spec"]["evaluation"]["samples"] == 64
    assert "serving" not in stored["spec"], "a null object is pruned, not defaulted"
    assert stored["spec"]["compression"]["backoffLimit"] == 2  # the CRD default


async def test_unknown_fields_are_pruned_or_refused_with_strict_validation() -> None:
    """Field pruning; with fieldValidation=Strict (what kubectl apply asks) a 422."""
    manifest = copy.deepcopy(MODEL)
    manifest["spec"]["servng"] = {"variant": "w8"}
    async with running_cluster() as (cluster, _):
        status, answer = await _send(
            cluster, "post", MODELS, manifest, params={"fieldValidation": "Strict"}
        )
        assert status == 422 and "spec.servng" in answer["message"]
        status, stored = await _send(cluster, "post", MODELS, manifest)
    assert status in (200, 201) and "servng" not in stored["spec"]


async def test_a_schema_or_cel_violation_is_a_422_naming_the_field() -> None:
    manifest = copy.deepcopy(MODEL)
    manifest["spec"]["variants"][0]["quantize"] = {"scheme": "W8A16", "algorithm": "awq"}
    async with running_cluster() as (cluster, _):
        status, answer = await _send(cluster, "post", MODELS, manifest)
    assert status == 422
    assert answer["reason"] == "Invalid" and "spec.variants[0].quantize" in answer["message"]


async def test_a_jobset_its_published_schema_refuses_is_a_422() -> None:
    """Custom resources of other projects are validated by their own CRDs: a JobSet with
    a misspelt field (or a string restart count) is refused, naming the field."""
    jobset = {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": "gang", "namespace": NS},
        "spec": {"replicatedJob": [], "failurePolicy": {"maxRestarts": "2"}},
    }
    path = f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NS}/jobsets"
    async with running_cluster(jobset=True) as (cluster, _):
        status, answer = await _send(cluster, "post", path, jobset)
    assert status == 422, answer
    assert "spec.replicatedJob" in answer["message"]
    assert "spec.failurePolicy.maxRestarts" in answer["message"]


async def test_generation_moves_with_the_spec_only() -> None:
    """metadata.generation: incremented on spec changes, not on metadata or status."""
    async with running_cluster() as (cluster, _):
        await _send(cluster, "post", MODELS, MODEL)
        await _send(cluster, "patch", f"{MODELS}/tiny", {"metadata": {"labels": {"a": "b"}}})
        await _send(cluster, "patch", f"{MODELS}/tiny/status", {"status": {"summary": {}}})
        assert cluster.get(MODELS_RESOURCE, NS, "tiny")["metadata"]["generation"] == 1
        await _send(cluster, "patch", f"{MODELS}/tiny", {"spec": {"deletionPolicy": "Delete"}})
        assert cluster.get(MODELS_RESOURCE, NS, "tiny")["metadata"]["generation"] == 2


MODELS_RESOURCE = "modelpress.dev/v1alpha1/compressedmodels"


async def test_the_status_subresource_splits_spec_and_status_writes() -> None:
    """Status subresource: a write to the object ignores status; a write to /status
    changes only status."""
    condition = {"type": "Ready", "status": "True", "reason": "Ready", "message": ""}
    async with running_cluster() as (cluster, _):
        await _send(cluster, "post", MODELS, {**MODEL, "status": {"conditions": [condition]}})
        assert "status" not in cluster.get(MODELS_RESOURCE, NS, "tiny")
        await _send(
            cluster,
            "patch",
            f"{MODELS}/tiny/status",
            {"spec": {"deletionPolicy": "Delete"}, "status": {"conditions": [condition]}},
        )
        stored = cluster.get(MODELS_RESOURCE, NS, "tiny")
        assert stored["spec"]["deletionPolicy"] == "Retain"
        assert stored["status"]["conditions"] == [condition]
        await _send(cluster, "patch", f"{MODELS}/tiny", {"status": {"conditions": []}})
        assert cluster.get(MODELS_RESOURCE, NS, "tiny")["status"]["conditions"] == [condition]


async def test_a_status_the_crd_refuses_is_a_422() -> None:
    bad = {"status": {"serving": {"strategy": "BlueGreen"}}}
    async with running_cluster() as (cluster, _):
        await _send(cluster, "post", MODELS, MODEL)
        status, answer = await _send(cluster, "patch", f"{MODELS}/tiny/status", bad)
        assert status == 422 and "status.serving.strategy" in answer["message"]
        assert cluster.status_violations  # what the suites assert to be empty
        cluster.status_violations.clear()


async def test_a_write_with_a_stale_resource_version_is_a_409() -> None:
    """Optimistic concurrency: a resourceVersion that is not the current one conflicts."""
    async with running_cluster() as (cluster, _):
        _, created = await _send(cluster, "post", MODELS, MODEL)
        old = created["metadata"]["resourceVersion"]
        await _send(cluster, "patch", f"{MODELS}/tiny", {"metadata": {"labels": {"a": "b"}}})
        stale = {"metadata": {"resourceVersion": old}, "spec": {"deletionPolicy": "Delete"}}
        status, answer = await _send(cluster, "patch", f"{MODELS}/tiny", stale)
        assert status == 409 and answer["reason"] == "Conflict"
        assert cluster.get(MODELS_RESOURCE, NS, "tiny")["spec"]["deletionPolicy"] == "Retain"


async def test_a_json_patch_is_a_write_with_a_new_resource_version() -> None:
    """JSON patches (kopf's finalizers) move resourceVersion, so a `test` op on it fails
    once someone else has written."""
    async with running_cluster() as (cluster, _):
        _, created = await _send(cluster, "post", MODELS, MODEL)
        old = created["metadata"]["resourceVersion"]
        add = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": old},
            {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
        ]
        status, _ = await _send(cluster, "patch", f"{MODELS}/tiny", add, content_type=JSON_PATCH)
        assert status == 200
        now = cluster.get(MODELS_RESOURCE, NS, "tiny")["metadata"]
        assert now["finalizers"] == ["x/y"] and now["resourceVersion"] != old
        status, _ = await _send(cluster, "patch", f"{MODELS}/tiny", add, content_type=JSON_PATCH)
        assert status >= 400, "the tested resourceVersion is stale now"


async def test_a_watch_from_a_list_sends_only_what_changed_after_it() -> None:
    """A watch started at the list's resourceVersion does not replay older objects."""
    import aiohttp

    async with running_cluster() as (cluster, url), aiohttp.ClientSession(url) as client:
        await _send(cluster, "post", MODELS, MODEL)
        async with client.get(MODELS) as response:
            listed = await response.json()
        version = listed["metadata"]["resourceVersion"]
        other = copy.deepcopy(MODEL)
        other["metadata"]["name"] = "later"
        await _send(cluster, "post", MODELS, other)
        params = {"watch": "true", "resourceVersion": version}
        async with client.get(MODELS, params=params) as response:
            line = await response.content.readline()
        assert json.loads(line)["object"]["metadata"]["name"] == "later"


def _service(**annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc", "namespace": NS, "annotations": annotations},
        "spec": {"ports": [{"port": 80}]},
    }


APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"


async def test_server_side_apply_removes_what_a_manager_stops_applying() -> None:
    """Server-side apply: a field the manager applied before and omits now is removed,
    unless another manager also owns it."""
    async with running_cluster() as (cluster, _):
        await _send(cluster, "post", SERVICES, _service())
        path = f"{SERVICES}/svc"
        mine = {"fieldManager": "modelpress", "force": "true"}
        await _send(cluster, "patch", path, _service(a="1", b="2"), params=mine, content_type=APPLY)
        await _send(cluster, "patch", path, _service(a="1"), params=mine, content_type=APPLY)
        annotations = cluster.get("v1/services", NS, "svc")["metadata"]["annotations"]
        assert annotations == {"a": "1"}


async def test_server_side_apply_conflicts_unless_forced() -> None:
    """A field another manager owns with another value: 409 Conflict, or taken over
    with force=true."""
    async with running_cluster() as (cluster, _):
        await _send(cluster, "post", SERVICES, _service())
        path = f"{SERVICES}/svc"
        theirs = {"fieldManager": "someone"}
        await _send(cluster, "patch", path, _service(a="theirs"), params=theirs, content_type=APPLY)
        status, answer = await _send(
            cluster, "patch", path, _service(a="mine"), params={"fieldManager": "me"},
            content_type=APPLY,
        )  # fmt: skip
        assert status == 409 and "owned by someone" in answer["message"]
        status, _ = await _send(
            cluster, "patch", path, _service(a="mine"),
            params={"fieldManager": "me", "force": "true"}, content_type=APPLY,
        )  # fmt: skip
        assert status == 200
        assert cluster.get("v1/services", NS, "svc")["metadata"]["annotations"]["a"] == "mine"
