"""Specs the API server accepts but the operator cannot satisfy: a clear condition,
no crash loop, and recovery once the problem is fixed (emulated cluster)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import socket
import threading
from collections.abc import Iterator

import pytest
from tests.operator.cluster import DEPLOYMENTS
from tests.operator.conftest import NAMESPACE, Harness, model_manifest, sizes_by_variant
from tests.operator.kubelet import Outcome

from modelpress.api.admission import schema_problems
from modelpress.api.kstatus import compute as kstatus


def _status_writes(harness: Harness, since: int) -> list[str]:
    return [
        r.path
        for r in harness.cluster.seen[since:]
        if r.method == "PATCH" and r.path.endswith("/status") and "kmock" not in r.agent
    ]


async def test_an_fp8_variant_applied_as_kubectl_does_goes_ready(harness: Harness) -> None:
    """The API server fills in the CRD's defaults; none of them may turn FP8_DYNAMIC into a
    request the operator refuses (0.1.0 defaulted algorithm to gptq, then refused it)."""
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["variants"][1] = {"name": "fp8", "quantize": {"scheme": "FP8_DYNAMIC"}}
    await harness.start_operator()
    await harness.apply(manifest)
    stored = harness.model("tiny")
    assert stored is not None
    assert stored["spec"]["evaluation"]["metric"] == "perplexity", "CRD defaults applied"
    assert "algorithm" not in stored["spec"]["variants"][1]["quantize"]
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    fp8 = harness.condition("tiny", "Compressed", variant="fp8")
    assert fp8["reason"] == "Published"


async def test_the_api_server_refuses_what_the_operator_would_refuse(harness: Harness) -> None:
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["variants"][1] = {
        "name": "fp8",
        "quantize": {"scheme": "FP8_DYNAMIC", "algorithm": "gptq"},
    }
    collection = f"/apis/modelpress.dev/v1alpha1/namespaces/{NAMESPACE}/compressedmodels"
    async with harness.cluster.post(collection, json=manifest) as response:
        assert response.status == 422
        answer = await response.json()
    assert "spec.variants[1].quantize.algorithm" in answer["message"]
    assert "set algorithm rtn or leave it unset" in answer["message"]
    assert harness.model("tiny") is None


async def test_a_spec_only_the_operator_rejects_gets_a_condition_naming_the_field(
    harness: Harness,
) -> None:
    """An object an older CRD let through (Helm never upgrades CRDs by itself): the
    operator says which field to change and touches nothing until it is changed."""
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["variants"][1] = {
        "name": "w4",
        "quantize": {"scheme": "FP8_DYNAMIC", "algorithm": "gptq"},
    }
    assert schema_problems(manifest) != [], "today's CRD refuses it"

    await harness.start_operator()
    harness.cluster.admission = False  # the cluster still has an older CRD
    await harness.apply(manifest)
    harness.cluster.admission = True
    ready = await harness.wait_condition("tiny", "Ready", "False", "InvalidSpec")
    assert "spec.variants[1].quantize" in ready["message"]
    assert "set algorithm rtn or leave it unset" in ready["message"]
    assert harness.status("tiny")["summary"]["phase"] == "Failed"
    assert kstatus(harness.model("tiny")).status == "Failed", "Flux's wait stops, failed"

    mark = len(harness.cluster.seen)
    await asyncio.sleep(4.5)  # two resync periods: no retries, no repeated writes
    assert harness.jobs("tiny") == []
    assert _status_writes(harness, mark) == []

    fixed = copy.deepcopy(manifest)
    fixed["spec"]["variants"][1]["quantize"]["algorithm"] = "rtn"
    await harness.apply(fixed)
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    assert harness.status("tiny")["observedGeneration"] == 2


async def test_a_missing_storage_secret_is_reported_until_it_exists(harness: Harness) -> None:
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["storage"]["secretRef"] = {"name": "not-yet"}
    await harness.start_operator()
    await harness.apply(manifest)
    source = await harness.wait_condition("tiny", "SourceReady", "False", "SecretNotFound")
    assert "'not-yet' does not exist in namespace ml" in source["message"]
    assert "AWS_ACCESS_KEY_ID" in source["message"]
    await asyncio.sleep(2.5)
    assert harness.jobs("tiny") == []

    await harness.create(
        "v1/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "not-yet", "namespace": NAMESPACE},
            "data": harness.store.secret_data(),
        },
    )
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)


async def test_an_unknown_gpu_product_blocks_serving_but_not_compression(harness: Harness) -> None:
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["serving"]["gpu"] = {"product": "nvidia-b999"}
    await harness.start_operator()
    await harness.apply(manifest)
    serving = await harness.wait_condition(
        "tiny", "Serving", "False", "UnknownGpuProduct", timeout=45
    )
    assert "'nvidia-b999' is not in the operator's GPU catalog" in serving["message"]
    assert "nvidia-l4" in serving["message"]
    await harness.wait_condition("tiny", "VariantsReady", "True", timeout=45)
    assert harness.condition("tiny", "Fits", variant="w8")["reason"] == "UnknownGpuProduct"
    assert harness.cluster.all(DEPLOYMENTS) == []


async def test_a_variant_that_does_not_fit_is_reported_with_the_numbers(harness: Harness) -> None:
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["serving"]["gpu"] = {"product": "small-gpu"}
    await harness.start_operator(
        gpuCatalog={"small-gpu": {"memoryGiB": 0.5, "productLabel": "Small"}}
    )
    await harness.apply(manifest)
    serving = await harness.wait_condition(
        "tiny", "Serving", "False", "NoVariantQualifies", timeout=45
    )
    fits = harness.condition("tiny", "Fits", variant="w4")
    assert fits["status"] == "False" and fits["reason"] == "DoesNotFit"
    assert "GiB per GPU" in fits["message"] and "small-gpu" in fits["message"]
    assert "does not fit" in serving["message"]
    footprint = next(v for v in harness.status("tiny")["variants"] if v["name"] == "w4")[
        "footprint"
    ]
    assert footprint["fits"] is False and footprint["totalBytes"] > 0.5 * 2**30
    assert harness.cluster.all(DEPLOYMENTS) == []


async def test_a_corrupt_artifact_is_scoped_to_its_variant_and_repairable(
    harness: Harness,
) -> None:
    from modelpress.cli import main

    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store))
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    w8 = next(v for v in harness.status("tiny")["variants"] if v["name"] == "w8")
    await harness.stop_operator()  # a fresh operator: nothing of w8 remembered
    key = w8["artifactUri"].removeprefix(f"s3://{harness.store.bucket}/") + "manifest.json"
    harness.store.client().put_object(Bucket=harness.store.bucket, Key=key, Body=b"{garbled")

    await harness.start_operator()
    compressed = await harness.wait_condition(
        "tiny", "Compressed", "False", "ArtifactCorrupt", variant="w8", timeout=30
    )
    assert w8["artifactUri"] in compressed["message"]
    assert f"modelpress verify {w8['artifactUri']} --repair" in compressed["message"]
    assert harness.condition("tiny", "Ready", variant="w4")["status"] == "True", "w4 goes on"
    assert harness.status("tiny")["serving"]["variant"] == "w4", "and keeps serving"

    with pytest.MonkeyPatch.context() as patch:  # the store's credentials, as a person's
        for name, value in harness.store.environment().items():
            patch.setenv(name, value)
        assert main(["verify", w8["artifactUri"], "--repair"]) == 0
    await harness.wait_condition(
        "tiny", "Compressed", "True", "Published", variant="w8", timeout=45
    )


async def test_a_pod_that_cannot_be_scheduled_is_said_why(harness: Harness) -> None:
    release = asyncio.Event()

    def held(job: dict) -> Outcome:
        return Outcome(hold=release) if job["metadata"]["labels"].get(
            "modelpress.dev/variant") == "w4" else sizes_by_variant(job)  # fmt: skip

    harness.kubelet.behaviour = held
    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store))
    await harness.wait_condition(
        "tiny", "Compressed", "True", "Published", variant="w8", timeout=45
    )
    job = next(j for j in harness.jobs("tiny") if j["metadata"]["labels"].get(
        "modelpress.dev/variant") == "w4")  # fmt: skip
    name = job["metadata"]["name"]
    unschedulable = "0/3 nodes are available: 3 Insufficient memory."
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-p", "namespace": NAMESPACE, "labels": {"job-name": name}},
        "spec": {"containers": [{"name": "compress", "image": "c"}]},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False",
                            "reason": "Unschedulable", "message": unschedulable}],
        },
    }  # fmt: skip
    await harness.create("v1/pods", pod)
    path = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}/status"
    async with harness.cluster.patch(path, json={"status": {"active": 1, "ready": 0}}) as r:
        assert r.status < 400
    compressed = await harness.wait(
        lambda: (
            (c := harness.condition("tiny", "Compressed", variant="w4"))
            and unschedulable in c["message"]
            and c
        ),
        "the reason the pod waits",
        timeout=15,
    )
    assert "is waiting for its pod to start: Unschedulable" in compressed["message"]
    release.set()


@contextlib.contextmanager
def blackhole() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()  # the stuck reads fail now, and their threads end
        server.close()


async def test_a_dead_store_endpoint_holds_up_only_its_own_models(harness: Harness) -> None:
    with blackhole() as dead:
        data = dict(harness.store.secret_data())
        data["AWS_ENDPOINT_URL"] = base64.b64encode(dead.encode()).decode()
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
                  "metadata": {"name": "dead-store", "namespace": NAMESPACE}}  # fmt: skip
        await harness.create("v1/secrets", secret)
        await harness.start_operator(
            storeDeadlineSeconds=1,
            trust={"storeEndpoints": [harness.store.endpoint, dead]},
        )
        stuck = model_manifest("stuck", harness.store)
        stuck["spec"]["storage"]["secretRef"] = {"name": "dead-store"}
        await harness.apply(stuck)
        await harness.apply(model_manifest("tiny", harness.store))
        source = await harness.wait_condition("stuck", "SourceReady", "False", "StoreUnavailable")
        assert f"the store at {dead}" in source["message"]
        await harness.wait_condition("tiny", "Ready", "True", timeout=45)
        assert harness.condition("stuck", "SourceReady")["reason"] == "StoreUnavailable"
    # (closing the endpoint ends the stuck reads, so the operator can stop)
