"""End to end on an emulated cluster: edits, restarts, failures and the quality gate.

Compression Jobs are completed by the kubelet stand-in, which publishes a small
real artifact whose metrics each test chooses (see tests/operator/kubelet.py)."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from tests.operator.cluster import DEPLOYMENTS, JOBS
from tests.operator.conftest import NAMESPACE, Harness, model_manifest, sizes_by_variant
from tests.operator.kubelet import Outcome


def _variant(harness: Harness, model: str, name: str) -> dict[str, Any]:
    return next(v for v in harness.status(model)["variants"] if v["name"] == name)


def _served_key(harness: Harness, model: str) -> str | None:
    deployment = harness.cluster.get(DEPLOYMENTS, NAMESPACE, f"{model}-vllm")
    if deployment is None:
        return None
    return deployment["spec"]["template"]["metadata"]["labels"]["modelpress.dev/key"]


def _with_group_size(manifest: dict[str, Any], size: int) -> dict[str, Any]:
    edited = copy.deepcopy(manifest)
    w4 = next(v for v in edited["spec"]["variants"] if v["name"] == "w4")
    w4["quantize"]["groupSize"] = size
    return edited


async def test_editing_one_variant_recomputes_and_rolls_only_it(harness: Harness) -> None:
    await harness.start_operator()
    manifest = model_manifest("tiny", harness.store)
    await harness.apply(manifest)
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    w8_before, w4_before = _variant(harness, "tiny", "w8"), _variant(harness, "tiny", "w4")
    assert _served_key(harness, "tiny") == w4_before["key"]

    await harness.apply(_with_group_size(manifest, 32))
    await harness.wait(
        lambda: _served_key(harness, "tiny") not in (None, w4_before["key"]),
        "the Deployment to roll to the new w4",
    )
    await harness.wait_condition("tiny", "Ready", "True")

    status = harness.status("tiny")
    assert status["observedGeneration"] == 2
    w8_after, w4_after = _variant(harness, "tiny", "w8"), _variant(harness, "tiny", "w4")
    assert w8_after["key"] == w8_before["key"] and w8_after["job"] == w8_before["job"]
    assert w4_after["key"] != w4_before["key"]
    assert _served_key(harness, "tiny") == w4_after["key"]
    runs = harness.kubelet.runs
    assert sum(name.startswith("tiny-w8-") for name in runs) == 1  # w8 was never recomputed
    assert sum(name.startswith("tiny-w4-") for name in runs) == 2
    names = {j["metadata"]["name"] for j in harness.jobs("tiny")}
    assert w4_before["job"] not in names, "the obsolete w4 Job is removed"
    assert {w8_after["job"], w4_after["job"]} <= names
    assert len(harness.store.committed("artifacts")) == 3


async def test_restarting_the_operator_mid_pipeline_duplicates_nothing(harness: Harness) -> None:
    release = asyncio.Event()

    def held(job: dict[str, Any]) -> Outcome:
        outcome = sizes_by_variant(job)
        if job["metadata"]["labels"]["modelpress.dev/component"] == "compress":
            outcome.hold = release
        return outcome

    harness.kubelet.behaviour = held
    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store))
    await harness.wait_condition("tiny", "VariantsReady", "False", "Compressing", timeout=45)
    await harness.wait(
        lambda: len(harness.jobs("tiny")) == 3, "the fetch Job and two compression Jobs"
    )
    before = sorted(j["metadata"]["name"] for j in harness.jobs("tiny"))

    await harness.stop_operator()
    await harness.start_operator()
    await asyncio.sleep(5)  # resume, plus two resync periods of the new operator
    assert sorted(j["metadata"]["name"] for j in harness.cluster.all(JOBS)) == before

    release.set()
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    assert sorted(j["metadata"]["name"] for j in harness.cluster.all(JOBS)) == before
    assert sorted(harness.kubelet.runs) == before, "every Job ran exactly once"
    assert len(harness.cluster.all(DEPLOYMENTS)) == 1


async def test_a_failing_job_is_retried_then_reported_with_its_reason(harness: Harness) -> None:
    crash = json.dumps(
        {
            "error": "ValueError: the loss became NaN at step 3",
            "reason": "CompressionFailed",
            "exitCode": 1,
        }
    )

    backoff = asyncio.Event()

    def failing(job: dict[str, Any]) -> Outcome:
        outcome = sizes_by_variant(job)
        if job["metadata"]["labels"].get("modelpress.dev/variant") == "w4":
            outcome.failing_attempts = 10
            outcome.message = crash
            outcome.retry = backoff
        return outcome

    harness.kubelet.behaviour = failing
    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store))

    # Between the attempts, as during a real Job's backoff, the retry is reported.
    retrying = await harness.wait_condition(
        "tiny", "Compressed", "False", "JobRetrying", variant="w4", timeout=45
    )
    assert "retrying" in retrying["message"]
    backoff.set()
    failed = await harness.wait_condition(
        "tiny", "Compressed", "False", "JobFailed", variant="w4", timeout=45
    )
    assert "BackoffLimitExceeded" in failed["message"]
    assert "CompressionFailed: ValueError: the loss became NaN at step 3" in failed["message"]
    ready = await harness.wait_condition("tiny", "Ready", "False", "JobFailed")
    assert "w4" in ready["message"]
    w4_job = _variant(harness, "tiny", "w4")["job"]
    assert harness.cluster.get(JOBS, NAMESPACE, w4_job)["status"]["failed"] == 2  # backoffLimit 1

    # The other variant is still served: auto chooses among what could be built.
    await harness.wait_condition("tiny", "Serving", "True", "Available")
    assert harness.status("tiny")["serving"]["variant"] == "w8"
    assert harness.status("tiny")["summary"]["phase"] == "Failed"
    await harness.wait(
        lambda: (
            {"JobRetrying", "JobFailed"}
            <= {e["reason"] for e in harness.events("tiny") if e["type"] == "Warning"}
        ),
        "Warning Events for the retry and the failure",
    )


async def test_the_quality_gate_blocks_a_rollout_and_the_previous_variant_keeps_serving(
    harness: Harness,
) -> None:
    worse = {
        "perplexity": 13.0,
        "basePerplexity": 10.0,
        "perplexityIncrease": 0.3,
        "agreement": 0.8,
    }
    gate_open = True

    def gated(job: dict[str, Any]) -> Outcome:
        outcome = sizes_by_variant(job)
        if not gate_open and job["metadata"]["labels"].get("modelpress.dev/variant") == "w4":
            outcome.metrics = worse
        return outcome

    harness.kubelet.behaviour = gated
    await harness.start_operator()
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["serving"]["variant"] = "w4"
    await harness.apply(manifest)
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    served = _served_key(harness, "tiny")
    assert served == _variant(harness, "tiny", "w4")["key"]

    gate_open = False
    await harness.apply(_with_group_size(manifest, 32))
    serving = await harness.wait_condition(
        "tiny", "Serving", "False", "QualityGateFailed", timeout=45
    )
    assert "+30.00%" in serving["message"] and "10.00%" in serving["message"]
    assert "w4 keeps serving" in serving["message"]
    gate = harness.condition("tiny", "QualityGate", variant="w4")
    assert gate["status"] == "False" and "13 (base 10)" in gate["message"]

    await asyncio.sleep(3)
    assert _served_key(harness, "tiny") == served, "the failing variant is never rolled out"
    status = harness.status("tiny")
    assert status["serving"]["variant"] == "w4"
    assert status["summary"]["phase"] == "Failed"
    assert harness.condition("tiny", "Ready")["reason"] == "QualityGateFailed"


async def test_kubectl_set_image_on_the_serving_deployment_is_reverted(harness: Harness) -> None:
    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store))
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/tiny-vllm"
    live = harness.cluster.get(DEPLOYMENTS, NAMESPACE, "tiny-vllm")
    assert live is not None
    image = live["spec"]["template"]["spec"]["containers"][0]["image"]
    containers = [{"name": "vllm", "image": "attacker/vllm:latest"}]
    edit = {"spec": {"template": {"spec": {"containers": containers}}}}
    async with harness.cluster.patch(path, json=edit) as response:
        assert response.status < 400, await response.text()

    def reverted() -> bool:
        now = harness.cluster.get(DEPLOYMENTS, NAMESPACE, "tiny-vllm") or {}
        return now["spec"]["template"]["spec"]["containers"][0]["image"] == image

    await harness.wait(reverted, "the image to be put back", timeout=15)
