"""Serving across nodes in the emulated cluster: a variant no single node holds is served
by a LeaderWorkerSet the stand-in controller marks ready; without LWS installed, the
model says what to install."""

from __future__ import annotations

from typing import Any

from tests.operator.cluster import DEPLOYMENTS, LEADER_WORKER_SETS, SERVICES
from tests.operator.conftest import NAMESPACE, Harness, emulated, model_manifest

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


async def test_a_distillation_over_two_nodes_runs_as_an_indexed_job(harness: Harness) -> None:
    from tests.operator.cluster import JOBS

    chain = {
        "name": "slim",
        "steps": [
            {"prune": {"method": "layer-drop", "fraction": 0.25}},
            {"distill": {"steps": 4, "batchSize": 4}},
        ],
    }
    await harness.start_operator()
    body = model_manifest(
        "tiny", harness.store, variants=[chain], compression={"nodes": 2, "backoffLimit": 1}
    )
    await harness.apply(body)
    await harness.wait_condition("tiny", "VariantsReady", "True", timeout=45)
    (job,) = [j for j in harness.cluster.all(JOBS, NAMESPACE) if "slim" in j["metadata"]["name"]]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    name = job["metadata"]["name"]
    service = harness.cluster.get(SERVICES, NAMESPACE, name)
    assert service is not None and service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["ownerReferences"][0]["kind"] == "CompressedModel"
    endpoint = harness.cluster.get(SERVICES, NAMESPACE, "tiny")
    assert endpoint is None or endpoint["spec"].get("clusterIP") != "None"
