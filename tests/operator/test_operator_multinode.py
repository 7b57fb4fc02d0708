"""Across nodes in the emulated cluster: a variant no single node holds is served by a
LeaderWorkerSet the stand-in controller marks ready (without LWS installed, the model
says what to install); a distillation over nodes runs as a JobSet the stand-in JobSet
controller runs and restarts, or as an indexed Job where the cluster has no JobSet."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.operator.cluster import DEPLOYMENTS, JOB_SETS, JOBS, LEADER_WORKER_SETS, SERVICES
from tests.operator.conftest import NAMESPACE, Harness, emulated, model_manifest
from tests.operator.kubelet import Outcome

#: A GPU small enough that SmolLM2 with a 64-sequence KV cache needs two of them, and
#: one per node: so two nodes (tensor parallel 1 x pipeline parallel 2).
CATALOG = {"gpuCatalog": {"tiny-gpu": {"memoryGiB": 4, "maxPerNode": 1, "productLabel": "TINY"}}}
SERVING = {
    "variant": "w4",
    "maxModelLen": 2048,
    "maxNumSeqs": 64,
    "gpu": {"product": "tiny-gpu"},
    "maxNodes": 2,
}


def manifest(harness: Harness) -> dict[str, Any]:
    return model_manifest("tiny", harness.store, serving=SERVING)


async def test_a_variant_spanning_two_nodes_serves_from_a_leader_worker_set(store) -> None:
    async with emulated(store, lws=True) as harness:
        await harness.start_operator(**CATALOG)
        await harness.apply(manifest(harness))
        await harness.wait_condition("tiny", "Ready", "True", timeout=45)
        group_set = harness.cluster.get(LEADER_WORKER_SETS, NAMESPACE, "tiny-vllm")
        assert group_set is not None
        assert group_set["spec"]["leaderWorkerTemplate"]["size"] == 2
        assert group_set["metadata"]["ownerReferences"][0]["kind"] == "CompressedModel"
        assert harness.cluster.get(DEPLOYMENTS, NAMESPACE, "tiny-vllm") is None
        service = harness.cluster.get(SERVICES, NAMESPACE, "tiny")
        assert service is not None
        assert service["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
        serving = harness.status("tiny")["serving"]
        assert (serving["nodes"], serving["gpus"], serving["variant"]) == (2, 2, "w4")

        # Back within one node (a larger GPU): a Deployment, then the LWS goes.
        catalog_bigger = {**SERVING, "gpu": {"product": "nvidia-l4"}, "maxNodes": 1}
        await harness.apply(model_manifest("tiny", harness.store, serving=catalog_bigger))
        await harness.wait(
            lambda: harness.cluster.get(LEADER_WORKER_SETS, NAMESPACE, "tiny-vllm") is None,
            "the LeaderWorkerSet to go once the Deployment serves",
            timeout=45,
        )
        assert harness.cluster.get(DEPLOYMENTS, NAMESPACE, "tiny-vllm") is not None
        assert harness.status("tiny")["serving"]["nodes"] == 1


async def test_without_leader_worker_set_the_model_says_what_to_install(
    harness: Harness,
) -> None:
    await harness.start_operator(**CATALOG)
    await harness.apply(manifest(harness))
    serving = await harness.wait_condition(
        "tiny", "Serving", "False", "MultiNodeUnavailable", timeout=45
    )
    assert "install LeaderWorkerSet" in serving["message"]


CHAIN = {
    "name": "slim",
    "steps": [
        {"prune": {"method": "layer-drop", "fraction": 0.25}},
        {"distill": {"steps": 4, "batchSize": 4}},
    ],
}


def over_two_nodes(harness: Harness) -> dict[str, Any]:
    return model_manifest(
        "tiny", harness.store, variants=[CHAIN], compression={"nodes": 2, "backoffLimit": 1}
    )


async def test_without_jobset_a_distillation_over_two_nodes_runs_as_an_indexed_job(
    harness: Harness,
) -> None:
    """Its headless Service is there while the gang runs and goes when it ends."""
    release = asyncio.Event()

    def held(job: dict[str, Any]) -> Outcome:
        slim = job["metadata"]["labels"].get("modelpress.dev/variant") == "slim"
        return Outcome(hold=release if slim else None)

    harness.kubelet.behaviour = held
    await harness.start_operator()
    await harness.apply(over_two_nodes(harness))
    await harness.wait(
        lambda: [
            j for j in harness.cluster.all(JOBS, NAMESPACE) if "slim" in j["metadata"]["name"]
        ],
        "the indexed Job",
        timeout=45,
    )
    (job,) = [j for j in harness.cluster.all(JOBS, NAMESPACE) if "slim" in j["metadata"]["name"]]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CompressedModel"
    name = job["metadata"]["name"]
    service = await harness.wait(
        lambda: harness.cluster.get(SERVICES, NAMESPACE, name), "the headless Service"
    )
    assert service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["ownerReferences"][0]["kind"] == "CompressedModel"
    release.set()
    await harness.wait_condition("tiny", "VariantsReady", "True", timeout=45)
    await harness.wait(
        lambda: harness.cluster.get(SERVICES, NAMESPACE, name) is None,
        "the headless Service to go once the gang has finished",
        timeout=45,
    )
    assert harness.cluster.get(JOBS, NAMESPACE, name) is not None, "the Job waits for its TTL"
    endpoint = harness.cluster.get(SERVICES, NAMESPACE, "tiny")
    assert endpoint is None or endpoint["spec"].get("clusterIP") != "None"


async def test_with_jobset_a_distillation_over_two_nodes_runs_as_one_jobset(store) -> None:
    async with emulated(store, jobset=True) as harness:
        await harness.start_operator()
        await harness.apply(over_two_nodes(harness))
        await harness.wait_condition("tiny", "VariantsReady", "True", timeout=45)
        (gang,) = harness.cluster.all(JOB_SETS, NAMESPACE)
        name = gang["metadata"]["name"]
        assert gang["metadata"]["ownerReferences"][0]["kind"] == "CompressedModel"
        (job,) = [
            j for j in harness.cluster.all(JOBS, NAMESPACE) if "slim" in j["metadata"]["name"]
        ]
        assert job["metadata"]["name"] == f"{name}-node-0"
        assert job["metadata"]["ownerReferences"][0]["kind"] == "JobSet"
        assert harness.cluster.get(SERVICES, NAMESPACE, name) is None, "JobSet makes its own"
        (variant,) = harness.status("tiny")["variants"]
        assert variant["job"] == name


async def test_a_gang_that_loses_a_pod_is_restarted_whole_then_fails_with_the_pod_message(
    store,
) -> None:
    """The first run of the gang fails: JobSet restarts it (a new Job); when that fails too
    and no restart is left, the variant fails with the pod's own message."""
    runs: list[str] = []
    crash = json.dumps({"error": "RuntimeError: rank 1 lost", "reason": "CompressionFailed"})

    def failing(job: dict[str, Any]) -> Outcome:
        if job["metadata"]["labels"].get("modelpress.dev/variant") != "slim":
            return Outcome()  # the fetch Job
        runs.append(job["metadata"]["uid"])
        return Outcome(failing_attempts=1, message=crash)

    async with emulated(store, jobset=True) as harness:
        harness.kubelet.behaviour = failing
        await harness.start_operator()
        await harness.apply(over_two_nodes(harness))
        failed = await harness.wait_condition(
            "tiny", "Compressed", "False", "JobFailed", variant="slim", timeout=45
        )
        assert "CompressionFailed: RuntimeError: rank 1 lost" in failed["message"]
        (gang,) = harness.cluster.all(JOB_SETS, NAMESPACE)
        assert gang["status"]["restarts"] == 1  # spec.compression.backoffLimit
        assert len(runs) == 2, "the whole gang ran twice: once, then once restarted"


async def test_a_jobset_running_when_nodes_is_lowered_is_followed_to_its_end(store) -> None:
    """The spec no longer spreads, but its gang still runs: the operator keeps reading it
    and starts no second Job for the same artifact."""
    release = asyncio.Event()

    def held(job: dict[str, Any]) -> Outcome:
        slim = job["metadata"]["labels"].get("modelpress.dev/variant") == "slim"
        return Outcome(hold=release if slim else None)

    async with emulated(store, jobset=True) as harness:
        harness.kubelet.behaviour = held
        await harness.start_operator()
        await harness.apply(over_two_nodes(harness))
        await harness.wait(
            lambda: any("slim" in run for run in harness.kubelet.runs), "the gang to run"
        )
        (gang,) = harness.cluster.all(JOB_SETS, NAMESPACE)
        one_node = model_manifest(
            "tiny", harness.store, variants=[CHAIN], compression={"backoffLimit": 1}
        )
        await harness.apply(one_node)
        await harness.wait(
            lambda: harness.status("tiny").get("observedGeneration") == 2, "the new spec read"
        )
        await asyncio.sleep(1)  # a few more reconciles
        slim_jobs = [
            j for j in harness.cluster.all(JOBS, NAMESPACE) if "slim" in j["metadata"]["name"]
        ]
        assert [j["metadata"]["name"] for j in slim_jobs] == [f"{gang['metadata']['name']}-node-0"]
        (variant,) = harness.status("tiny")["variants"]
        assert variant["job"] == gang["metadata"]["name"]
        release.set()
        await harness.wait_condition("tiny", "VariantsReady", "True", timeout=45)
        assert len(harness.cluster.all(JOBS, NAMESPACE)) == 2, "the fetch Job and the gang's"
