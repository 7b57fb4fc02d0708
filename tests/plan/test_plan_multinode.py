"""A variant no single node holds: a LeaderWorkerSet of one pod per node, its Service on
the leaders, its pods allowed to talk to each other, and the same rollout safety."""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from tests import crds
from tests.plan.conftest import BASE, SOURCE, make_spec, variant_artifact
from tests.plan.test_plan_reconcile import OWNER, conditions, plan, service_state

from modelpress.config import OperatorConfig
from modelpress.plan import names
from modelpress.plan.multinode import LWS_KIND, MASTER_PORT
from modelpress.plan.observed import DeploymentState, Observed, leader_worker_set_state
from modelpress.plan.recipes import variant_locations
from modelpress.plan.reconcile import Plan
from modelpress.plan.serving import WORKER_INDEX_LABEL
from modelpress.sizing import ModelShape, predict_weights_bytes

LLAMA_405B = json.loads(
    (Path(__file__).resolve().parents[1] / "sizing" / "configs" / "Llama-3.1-405B.json").read_text()
)
BF16_405B = predict_weights_bytes(ModelShape.from_config(LLAMA_405B), "BF16")
VARIANTS = [{"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}]


def big_spec(max_nodes: int = 4, **serving: Any):
    settings = {"gpu": {"product": "nvidia-h100-80gb"}, "maxModelLen": 8192, "maxNumSeqs": 16}
    return make_spec(variants=VARIANTS, serving=settings | {"maxNodes": max_nodes} | serving)


def built(spec) -> Observed:
    ((key, uri),) = variant_locations(spec, SOURCE, OperatorConfig()).values()
    artifact = variant_artifact(uri, BF16_405B, 0.01, config=LLAMA_405B)
    return Observed(source=SOURCE, base=BASE, artifacts={key: artifact})


#: A Deployment serving an older variant on one node, rolled out.
OLD_DEPLOYMENT = DeploymentState(
    name="tiny-vllm",
    owner_uid=OWNER.uid,
    spec_hash="0ld0ld00",
    variant="w8",
    key="old-key",
    ready_replicas=1,
    updated_replicas=1,
    available_replicas=1,
)


def child(result: Plan, kind: str) -> dict[str, Any]:
    (found,) = [o for o in result.create + result.apply if o["kind"] == kind]
    return found


@functools.cache
def _cached_schemas() -> None:
    kubernetes_validate.utils.schema_contents = functools.cache(
        kubernetes_validate.utils.schema_contents
    )


def as_pod(template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, **template}


def test_a_variant_no_node_holds_is_served_by_a_leader_worker_set() -> None:
    spec = big_spec()
    result = plan(spec, built(spec))
    assert not [o for o in result.create if o["kind"] == "Deployment"]
    lws = child(result, LWS_KIND)
    group = lws["spec"]["leaderWorkerTemplate"]
    assert group["size"] == 2 and group["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"] == {
        "maxUnavailable": 1,
        "maxSurge": 0,
    }, "a rollout never waits for spare GPUs"
    leader = group["leaderTemplate"]["spec"]["containers"][0]
    worker = group["workerTemplate"]["spec"]["containers"][0]
    assert leader["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert leader["args"][-8:] == [
        "--nnodes", "2", "--node-rank", "0",
        "--master-addr", "$(LWS_LEADER_ADDRESS)", "--master-port", str(MASTER_PORT),
    ]  # fmt: skip
    assert "--pipeline-parallel-size" in leader["args"] and "8" in leader["args"]
    assert worker["command"] == ["python3", "-m", "vllm.entrypoints.cli.main"]
    assert worker["args"][0] == "serve" and worker["args"][-1] == "--headless"
    assert "$(LWS_WORKER_INDEX)" in worker["args"]
    assert "readinessProbe" in leader and "readinessProbe" not in worker
    for container in (leader, worker):
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    for template in (group["leaderTemplate"], group["workerTemplate"]):
        pull = template["spec"]["initContainers"][0]
        assert pull["args"][0] == "pull", "every pod verifies the artifact"
        _cached_schemas()
        kubernetes_validate.validate(as_pod(template), "1.35.0", strict=True)
    assert crds.problems(lws) == [], "as LeaderWorkerSet's published schema admits it"
    service = child(result, "Service")
    assert service["spec"]["selector"][WORKER_INDEX_LABEL] == "0", "requests go to leaders"
    policy = child(result, "NetworkPolicy")
    peers = policy["spec"]["ingress"][1]
    assert peers == {"from": [{"podSelector": policy["spec"]["podSelector"]}]}
    serving = result.wire_status["serving"]
    assert (serving["nodes"], serving["gpus"]) == (2, 16)


def test_serving_across_nodes_reaches_ready_and_then_retires_the_deployment() -> None:
    spec = big_spec()
    first = plan(spec, built(spec))
    lws = child(first, LWS_KIND)
    ready = {"readyReplicas": 1, "updatedReplicas": 1, "replicas": 1}
    live = replace(leader_worker_set_state({**lws, "status": ready}), owner_uid=OWNER.uid)
    old_deployment = OLD_DEPLOYMENT  # what served before the spec grew
    observed = replace(
        built(spec),
        leader_worker_set=live,
        deployment=old_deployment,
        service=service_state(first),
    )
    result = plan(spec, observed, previous=first.wire_status)
    assert conditions(result.wire_status)["Serving"] == ("True", "Available")
    assert ("Deployment", old_deployment.name) in result.delete
    assert not [o for o in result.create + result.apply if o["kind"] == LWS_KIND]


def test_on_gpus_the_old_workload_goes_first_so_no_rollout_waits_for_its_gpus() -> None:
    spec = big_spec()
    first = plan(spec, built(spec))
    starting = replace(
        leader_worker_set_state({**child(first, LWS_KIND), "status": {}}), owner_uid=OWNER.uid
    )
    observed = replace(built(spec), leader_worker_set=starting, deployment=OLD_DEPLOYMENT)
    result = plan(spec, observed, previous=first.wire_status)
    assert conditions(result.wire_status)["Serving"] == ("False", "RollingOut")
    assert ("Deployment", OLD_DEPLOYMENT.name) in result.delete, "as Recreate does"


def test_a_cluster_without_leader_worker_set_is_told_what_to_install() -> None:
    spec = big_spec()
    observed = replace(built(spec), missing_kinds=frozenset({LWS_KIND}))
    result = plan(spec, observed)
    assert conditions(result.wire_status)["Serving"] == ("False", "MultiNodeUnavailable")
    serving = next(c for c in result.wire_status["conditions"] if c["type"] == "Serving")
    assert "needs 2 nodes of 8x nvidia-h100-80gb" in serving["message"]
    assert "install LeaderWorkerSet" in serving["message"]


def test_without_max_nodes_the_variant_does_not_fit_and_says_how_it_would() -> None:
    spec = big_spec(max_nodes=1)
    result = plan(spec, built(spec))
    fits = next(c for c in result.wire_status["variants"][0]["conditions"] if c["type"] == "Fits")
    assert fits["status"] == "False" and "serving.maxNodes: 2" in fits["message"]


def test_autoscaling_across_nodes_scales_the_leader_worker_set() -> None:
    spec = big_spec(autoscaling={"maxReplicas": 3})
    result = plan(spec, built(spec))
    lws = child(result, LWS_KIND)
    assert "replicas" not in lws["spec"], "the autoscaler owns the group count"
    assert lws["metadata"]["annotations"][names.ANNOTATION_AUTOSCALER] == "HorizontalPodAutoscaler"
    hpa = child(result, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == LWS_KIND
    assert names.deployment_name("tiny") == hpa["spec"]["scaleTargetRef"]["name"]


def _rolled_out(lws: dict[str, Any]) -> DeploymentState:
    ready = {"readyReplicas": 1, "updatedReplicas": 1, "replicas": 1}
    return replace(leader_worker_set_state({**lws, "status": ready}), owner_uid=OWNER.uid)


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t["workerTemplate"]["spec"]["containers"][0].update(image="evil/vllm:1"),
        lambda t: t["leaderTemplate"]["spec"]["containers"][0]["args"].append("--enforce-eager"),
        lambda t: t.update(size=1),
    ],
    ids=["a worker's image", "the leader's arguments", "the group size"],
)
def test_a_leader_worker_set_changed_behind_the_operators_back_is_put_back(edit: Any) -> None:
    spec = big_spec()
    first = plan(spec, built(spec))
    live = copy.deepcopy(child(first, LWS_KIND))
    edit(live["spec"]["leaderWorkerTemplate"])
    observed = replace(built(spec), leader_worker_set=_rolled_out(live),
                       service=service_state(first))  # fmt: skip
    result = plan(spec, observed, previous=first.wire_status)
    assert [o["kind"] for o in result.apply if o["kind"] == LWS_KIND] == [LWS_KIND]


def test_a_leader_worker_set_as_it_was_created_is_left_alone() -> None:
    spec = big_spec()
    first = plan(spec, built(spec))
    live = copy.deepcopy(child(first, LWS_KIND))
    live["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["dnsPolicy"] = "ClusterFirst"
    observed = replace(built(spec), leader_worker_set=_rolled_out(live),
                       service=service_state(first))  # fmt: skip
    result = plan(spec, observed, previous=first.wire_status)
    assert not [o for o in result.apply if o["kind"] == LWS_KIND], "defaults are no drift"
