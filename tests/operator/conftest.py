"""Fixtures for the operator's end-to-end tests: an emulated cluster (kmock), a real
S3-protocol store (moto server on 127.0.0.1) holding a tiny base checkpoint, the
kubelet stand-in, and operators started and stopped in-process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.operator.cluster import (  # noqa: E402
    GROUP_VERSION_PLURAL,
    JOBS,
    Cluster,
    running_cluster,
)
from tests.operator.kubelet import Kubelet, Outcome  # noqa: E402

NAMESPACE = "ml"
SECRET = "artifact-store"
ACCESS_KEY = "modelpress-operator-test"
SECRET_KEY = "operator-test-secret/with+slash"
SMOLLM2_CONFIG = ROOT / "tests" / "sizing" / "configs" / "SmolLM2-135M.json"
MODELS = "/apis/modelpress.dev/v1alpha1/namespaces"


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real credentials, AWS config or Hub tokens reach the operator or the Jobs."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "MODELPRESS_", "HF_", "KUBECONFIG")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MODELPRESS_S3_MAX_ATTEMPTS", "2")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Store:
    """A bucket on the moto server with a tiny base checkpoint and text files."""

    endpoint: str
    bucket: str

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}/store/"

    @property
    def base_uri(self) -> str:
        return f"s3://{self.bucket}/base/tiny/"

    def data_uri(self, name: str) -> str:
        return f"s3://{self.bucket}/data/{name}"

    @property
    def credentials(self) -> Any:
        from modelpress.storage import Credentials

        return Credentials(
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            endpoint_url=self.endpoint,
            region="us-east-1",
        )

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def environment(self) -> dict[str, str]:
        """The store's credentials as the AWS environment variables (and Secret keys)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def secret_data(self) -> dict[str, str]:
        return {k: base64.b64encode(v.encode()).decode() for k, v in self.environment().items()}

    def keys(self) -> list[str]:
        """Every object key in the bucket."""
        found = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            found += [item["Key"] for item in page.get("Contents", [])]
        return sorted(found)

    def committed(self, prefix: str) -> list[str]:
        """Keys of committed artifacts (prefixes holding a manifest) under store/<prefix>/."""
        found = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"store/{prefix}/"):
            for item in page.get("Contents", []):
                if item["Key"].endswith("/manifest.json"):
                    found.append(item["Key"].split("/")[2])
        return sorted(found)


@pytest.fixture
def store(moto_endpoint: str) -> Store:
    return make_store(moto_endpoint)


def make_store(moto_endpoint: str) -> Store:
    """A fresh bucket with a tiny base checkpoint and the text files."""
    result = Store(moto_endpoint, f"mp-{uuid.uuid4().hex[:12]}")
    client = result.client()
    client.create_bucket(Bucket=result.bucket)
    base = "base/tiny/"
    client.put_object(
        Bucket=result.bucket, Key=base + "config.json", Body=SMOLLM2_CONFIG.read_bytes()
    )
    client.put_object(
        Bucket=result.bucket, Key=base + "model.safetensors", Body=os.urandom(64 * 1024)
    )
    client.put_object(Bucket=result.bucket, Key=base + "tokenizer.json", Body=b'{"version": "1.0"}')
    client.put_object(Bucket=result.bucket, Key="data/eval.txt", Body=b"held-out text\n\nmore")
    client.put_object(Bucket=result.bucket, Key="data/calib.txt", Body=b"calibration text")
    return result


def model_manifest(name: str, store: Store, **spec: Any) -> dict[str, Any]:
    """A CompressedModel on `store`: w8 (rtn) and w4 (gptq), CPU serving, auto choice."""
    body: dict[str, Any] = {
        "source": {"uri": store.base_uri},
        "storage": {"uri": store.root, "secretRef": {"name": SECRET}},
        "calibration": {
            "dataset": {"uri": store.data_uri("calib.txt")},
            "samples": 8,
            "sequenceLength": 64,
        },
        "variants": [
            {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}},
            {"name": "w4", "quantize": {"scheme": "W4A16", "algorithm": "gptq", "groupSize": 64}},
        ],
        "evaluation": {
            "dataset": {"uri": store.data_uri("eval.txt")},
            "maxPerplexityIncrease": 0.1,
        },
        "serving": {"variant": "auto", "maxModelLen": 2048, "maxNumSeqs": 4},
        "compression": {"backoffLimit": 1},
    }
    body.update(spec)
    return {
        "apiVersion": "modelpress.dev/v1alpha1",
        "kind": "CompressedModel",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": body,
    }


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metric_samples(text: str) -> Samples:
    """Exposition text read with prometheus_client's own parser: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sizes_by_variant(job: dict[str, Any]) -> Outcome:
    """w4 is smaller than w8, so `auto` serves w4 when both pass."""
    variant = job["metadata"]["labels"].get("modelpress.dev/variant")
    return Outcome(size_ratio={"w8": 0.5, "w4": 0.3}.get(variant or "", 0.4))


@dataclass
class Harness:
    cluster: Cluster
    url: str
    store: Store
    kubelet: Kubelet
    operators: list[tuple[threading.Event, threading.Thread, list[BaseException]]] = field(
        default_factory=list
    )

    # --- the operator -----------------------------------------------------------------

    async def start_operator(self, metrics_endpoint: str | None = None, **config: Any) -> Any:
        """An operator in a thread of its own (kopf cancels every task of its event loop
        when it stops, so it gets a loop of its own, as in a real process)."""
        import kopf

        from modelpress.config import OperatorConfig
        from modelpress.handlers import OperatorState, run_operator

        settings = {
            "resyncSeconds": 2,
            "backoffSeconds": 0.5,
            "workerLimit": 4,
            "trust": {"storeEndpoints": [self.store.endpoint]},
            **config,
        }
        url = self.url
        state = OperatorState(
            OperatorConfig.model_validate(settings),
            login=lambda **_: kopf.ConnectionInfo(server=url, token="emulated"),
        )
        stop, ready = threading.Event(), threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(
                    run_operator(
                        state, metrics_endpoint=metrics_endpoint, stop_flag=stop, ready_flag=ready
                    )
                )
            except BaseException as error:  # reported when the operator is stopped
                failures.append(error)

        thread = threading.Thread(target=run, name="operator", daemon=True)
        thread.start()
        assert await asyncio.to_thread(ready.wait, 15), "the operator did not start"
        self.operators.append((stop, thread, failures))
        return state

    async def stop_operator(self) -> None:
        stop, thread, failures = self.operators.pop()
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive(), "the operator did not stop within 30 s"
        assert not failures, failures

    # --- the user's side -----------------------------------------------------------------

    async def apply(self, manifest: dict[str, Any]) -> None:
        """Like `kubectl apply`: create, or replace the spec of an existing object."""
        name = manifest["metadata"]["name"]
        collection = f"{MODELS}/{NAMESPACE}/compressedmodels"
        strict = {"fieldValidation": "Strict"}  # as kubectl apply asks
        if self.model(name) is None:
            async with self.cluster.post(collection, json=manifest, params=strict) as response:
                assert response.status < 400, await response.text()
        else:
            current = self.model(name)
            assert current is not None
            patch = {"spec": _replacing(current["spec"], manifest["spec"])}
            async with self.cluster.patch(
                f"{collection}/{name}", json=patch, params=strict
            ) as response:
                assert response.status < 400, await response.text()

    async def patch_status(self, name: str, status: dict[str, Any]) -> None:
        """A user with write access to compressedmodels/status edits it."""
        path = f"{MODELS}/{NAMESPACE}/compressedmodels/{name}/status"
        async with self.cluster.patch(path, json={"status": status}) as response:
            assert response.status < 400, await response.text()

    async def delete(self, name: str) -> None:
        async with self.cluster.delete(f"{MODELS}/{NAMESPACE}/compressedmodels/{name}") as response:
            assert response.status < 400, await response.text()

    async def create(self, resource: str, obj: dict[str, Any]) -> None:
        group_version, plural = resource.rsplit("/", 1)
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        path = f"{prefix}/namespaces/{obj['metadata']['namespace']}/{plural}"
        async with self.cluster.post(path, json=obj) as response:
            assert response.status < 400, await response.text()

    async def delete_object(self, resource: str, name: str) -> None:
        group_version, plural = resource.rsplit("/", 1)
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        async with self.cluster.delete(f"{prefix}/namespaces/{NAMESPACE}/{plural}/{name}") as r:
            assert r.status < 400, await r.text()

    async def create_secret(self) -> None:
        await self.create(
            "v1/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": SECRET, "namespace": NAMESPACE},
                "data": self.store.secret_data(),
            },
        )

    # --- observations ---------------------------------------------------------------------

    def model(self, name: str) -> dict[str, Any] | None:
        return self.cluster.get(GROUP_VERSION_PLURAL, NAMESPACE, name)

    def status(self, name: str) -> dict[str, Any]:
        return (self.model(name) or {}).get("status") or {}

    def condition(self, name: str, type_: str, variant: str | None = None) -> dict[str, Any]:
        status = self.status(name)
        conditions = status.get("conditions") or []
        if variant is not None:
            entry = next((v for v in status.get("variants") or [] if v["name"] == variant), {})
            conditions = entry.get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def jobs(self, name: str) -> list[dict[str, Any]]:
        return [
            j
            for j in self.cluster.all(JOBS, NAMESPACE)
            if j["metadata"]["labels"].get("modelpress.dev/model") == name
        ]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.cluster.all("v1/events", NAMESPACE)
            if (e.get("involvedObject") or {}).get("name") == name
        ]

    async def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    async def wait_condition(
        self, name: str, type_: str, status: str, reason: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            found = self.condition(name, type_, kwargs.get("variant"))
            if found.get("status") == status and (reason is None or found.get("reason") == reason):
                return found
            return None

        what = f"{name} {type_}={status}" + (f" ({reason})" if reason else "")
        try:
            return await self.wait(matches, what, kwargs.get("timeout", 30))
        except AssertionError:
            raise AssertionError(
                f"{what}; status now: {json.dumps(self.status(name), indent=1)[:4000]}"
            ) from None


def _replacing(old: Any, new: Any) -> Any:
    """A merge patch that turns `old` into `new` (null for removed keys)."""
    if isinstance(old, dict) and isinstance(new, dict):
        patch = {k: None for k in old if k not in new}
        for key, value in new.items():
            patch[key] = _replacing(old.get(key), value) if key in old else value
        return patch
    return new


def ungranted(cluster: Cluster) -> set[tuple[str, str, str]]:
    """Requests the operator sent that modelpress.handlers.permissions does not list (the
    table the chart's RBAC is tested against)."""
    from modelpress.handlers import permissions

    granted = {**permissions.NAMESPACED, **permissions.FRAMEWORK}
    found = set()
    for request in cluster.seen:
        wanted = request.permission() if request.by_operator else None
        if wanted is not None and wanted[2] not in granted.get(wanted[:2], frozenset()):
            found.add(wanted)
    return found


@pytest_asyncio.fixture
async def harness(store: Store) -> AsyncIterator[Harness]:
    async with emulated(store) as result:
        yield result


@contextlib.asynccontextmanager
async def emulated(
    store: Store, keda: bool = False, lws: bool = False, jobset: bool = False
) -> AsyncIterator[Harness]:
    """The emulated cluster (with KEDA's, LeaderWorkerSet's or JobSet's API, if asked), the
    stand-in kubelet and the storage Secret, checked as the API server would check them
    when the block ends."""
    async with running_cluster(keda=keda, lws=lws, jobset=jobset) as (cluster, url):
        kubelet = Kubelet(cluster, behaviour=sizes_by_variant)
        runner = asyncio.create_task(kubelet.run())
        result = Harness(cluster, url, store, kubelet)
        await result.create_secret()
        try:
            yield result
        finally:
            while result.operators:
                with contextlib.suppress(Exception):
                    await result.stop_operator()
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        assert cluster.status_violations == [], "statuses the API server would not store"
        assert ungranted(cluster) == set(), "requests the chart's RBAC does not allow"
