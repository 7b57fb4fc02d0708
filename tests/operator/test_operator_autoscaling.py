"""Autoscaling in the emulated cluster: the operator keeps the autoscaler beside the
Deployment, leaves the replica count to it, reports the cold start, and says so when
the cluster lacks the autoscaler's API."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.operator.cluster import DEPLOYMENTS, HPAS, SCALED_OBJECTS
from tests.operator.conftest import NAMESPACE, Harness, emulated, model_manifest
from tests.operator.kubelet import LOAD_SECONDS, PULL_SECONDS

SERVING = {"variant": "auto", "maxModelLen": 2048, "maxNumSeqs": 4}


def autoscaled(harness: Harness, **autoscaling: Any) -> dict[str, Any]:
    serving = SERVING | {"autoscaling": {"maxReplicas": 3, **autoscaling}}
    return model_manifest("tiny", harness.store, serving=serving)


def deployment(harness: Harness) -> dict[str, Any]:
    found = harness.cluster.get(DEPLOYMENTS, NAMESPACE, "tiny-vllm")
    assert found is not None
    return found


async def scale(harness: Harness, replicas: int) -> None:
    """What the HPA controller does: set the Deployment's replica count."""
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/tiny-vllm"
    async with harness.cluster.patch(path, json={"spec": {"replicas": replicas}}) as response:
        assert response.status < 400, await response.text()


async def test_an_hpa_scales_and_the_operator_leaves_the_count_to_it(harness: Harness) -> None:
    await harness.start_operator()
    await harness.apply(autoscaled(harness))
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)

    hpa = harness.cluster.get(HPAS, NAMESPACE, "tiny-vllm")
    assert hpa is not None and hpa["spec"]["maxReplicas"] == 3
    assert hpa["metadata"]["ownerReferences"][0]["kind"] == "CompressedModel"
    assert "replicas" not in deployment(harness)["spec"]
    status = await harness.wait(
        lambda: (
            (harness.status("tiny").get("serving") or {}).get("autoscaling", {}).get("coldStart")
            and harness.status("tiny")
        ),
        "the cold start in status",
    )
    autoscaling = status["serving"]["autoscaling"]
    assert autoscaling["kind"] == "HorizontalPodAutoscaler"
    cold = autoscaling["coldStart"]
    assert (cold["pullSeconds"], cold["loadSeconds"]) == (PULL_SECONDS, LOAD_SECONDS)
    assert PULL_SECONDS + LOAD_SECONDS - 1 <= cold["seconds"] <= PULL_SECONDS + LOAD_SECONDS + 1

    await scale(harness, 3)
    await harness.wait(
        lambda: (harness.status("tiny").get("serving") or {}).get("replicas") == 3,
        "the status to report the autoscaler's count",
    )
    await asyncio.sleep(3)  # more than a resync: the operator must not put 1 back
    assert deployment(harness)["spec"]["replicas"] == 3

    await harness.apply(model_manifest("tiny", harness.store, serving=SERVING | {"replicas": 2}))
    await harness.wait(
        lambda: harness.cluster.get(HPAS, NAMESPACE, "tiny-vllm") is None,
        "the HPA to be removed with autoscaling",
    )
    await harness.wait(
        lambda: deployment(harness)["spec"].get("replicas") == 2, "the fixed count back"
    )


async def test_with_keda_a_scaled_object_and_no_hpa(store) -> None:
    async with emulated(store, keda=True) as harness:
        await harness.start_operator()
        await harness.apply(autoscaled(harness, minReplicas=0, wakeQuery="vector(1)"))
        await harness.wait_condition("tiny", "Ready", "True", timeout=45)
        scaled = harness.cluster.get(SCALED_OBJECTS, NAMESPACE, "tiny-vllm")
        assert scaled is not None and scaled["spec"]["minReplicaCount"] == 0
        assert harness.cluster.get(HPAS, NAMESPACE, "tiny-vllm") is None
        kind = harness.status("tiny")["serving"]["autoscaling"]["kind"]
        assert kind == "ScaledObject"


async def test_keda_asked_for_but_missing_is_a_condition_not_a_retry_storm(
    harness: Harness,
) -> None:
    await harness.start_operator(autoscaling={"engine": "keda"})
    await harness.apply(autoscaled(harness))
    serving = await harness.wait_condition(
        "tiny", "Serving", "False", "AutoscalerUnavailable", timeout=45
    )
    assert "install KEDA" in serving["message"]
    assert harness.status("tiny")["summary"]["phase"] == "Failed"
    await asyncio.sleep(3)  # several resyncs
    posts = [s for s in harness.cluster.seen if s.method == "POST" and "scaledobjects" in s.path]
    assert len(posts) == 1, "the missing API is remembered, not asked again every reconcile"
