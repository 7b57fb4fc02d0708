"""A distillation over several GPUs or nodes: torchrun in the Job, and over nodes an
indexed Job whose pods find each other through a headless Service of its name."""

from __future__ import annotations

import functools
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from tests.plan.conftest import make_spec
from tests.plan.test_plan_reconcile import plan, with_base

from modelpress.plan.jobs import MASTER_PORT

CHAIN = {
    "name": "slim",
    "steps": [
        {"prune": {"method": "layer-drop", "fraction": 0.25}},
        {"distill": {"steps": 100, "batchSize": 8}},
    ],
}
PLAIN = {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}


def spec(nodes: int = 2, count: int = 2, batch: int = 8):
    chain = {**CHAIN, "steps": [CHAIN["steps"][0], {"distill": {"steps": 100, "batchSize": batch}}]}
    compression = {"gpu": {"product": "nvidia-l4", "count": count}, "nodes": nodes}
    return make_spec(variants=[chain, PLAIN], compression=compression)


def created(nodes: int = 2, count: int = 2) -> list[dict[str, Any]]:
    return plan(spec(nodes, count), with_base()).create


def job_of(objects: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    (job,) = [
        o
        for o in objects
        if o["kind"] == "Job" and o["metadata"]["labels"].get("modelpress.dev/variant") == variant
    ]
    return job


@functools.cache
def _cached() -> None:
    kubernetes_validate.utils.schema_contents = functools.cache(
        kubernetes_validate.utils.schema_contents
    )


def valid(obj: dict[str, Any]) -> None:
    _cached()
    kubernetes_validate.validate(obj, "1.35.0", strict=True)


def test_over_nodes_an_indexed_job_runs_torchrun_on_every_node() -> None:
    objects = created()
    job = job_of(objects, "slim")
    name = job["metadata"]["name"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == name
    container = pod["containers"][0]
    assert container["command"] == ["torchrun"]
    args = container["args"]
    assert args[: args.index("--no-python")] == [
        "--nproc-per-node", "2", "--nnodes", "2", "--node-rank", "$(JOB_COMPLETION_INDEX)",
        "--master-addr", f"{name}-0.{name}", "--master-port", str(MASTER_PORT),
    ]  # fmt: skip
    assert args[args.index("--no-python") + 1 : args.index("--no-python") + 3] == [
        "modelpress",
        "compress",
    ]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    valid(job)
    (service,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == name]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"job-name": name}
    assert service["metadata"]["labels"]["modelpress.dev/component"] == "compress"
    valid(service)


def test_a_variant_without_distillation_runs_as_one_process() -> None:
    job = job_of(created(), "w8")
    assert "completionMode" not in job["spec"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["modelpress"]


def test_on_one_node_torchrun_runs_a_process_per_gpu_without_a_service() -> None:
    objects = created(nodes=1, count=4)
    job = job_of(objects, "slim")
    assert "completionMode" not in job["spec"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["--standalone", "--nproc-per-node", "4"]
    assert not [
        o
        for o in objects
        if o["kind"] == "Service" and o["metadata"]["name"] == job["metadata"]["name"]
    ]


def test_going_distributed_keeps_the_job_name_so_a_running_job_is_never_replaced() -> None:
    one = job_of(created(nodes=1, count=1), "slim")["metadata"]["name"]
    assert job_of(created(nodes=2, count=2), "slim")["metadata"]["name"] == one


def test_a_batch_that_does_not_split_over_the_processes_is_refused() -> None:
    with pytest.raises(ValueError, match="batchSize 6 does not split over the 4 processes"):
        spec(nodes=2, count=2, batch=6)
