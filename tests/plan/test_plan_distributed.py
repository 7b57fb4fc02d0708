"""A distillation over several GPUs or nodes: torchrun in the Job, and over nodes a
JobSet (the gang restarted as one, its own headless Service) or, where the cluster has
no JobSet, an indexed Job whose pods find each other through a headless Service of its
name."""

from __future__ import annotations

import functools
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from tests import crds
from tests.plan.conftest import SOURCE, make_spec, spec_dict, variant_artifact
from tests.plan.test_plan_reconcile import plan, with_base

from modelpress.api.spec import CompressedModelSpec
from modelpress.config import OperatorConfig
from modelpress.plan.jobs import MASTER_PORT
from modelpress.plan.jobset import JOBSET_KIND, jobset_state, pod_selector
from modelpress.plan.observed import JobState, Owner
from modelpress.plan.recipes import variant_locations

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


def created(nodes: int = 2, count: int = 2, jobset: bool = False) -> list[dict[str, Any]]:
    missing = frozenset() if jobset else frozenset({JOBSET_KIND})
    return plan(spec(nodes, count), with_base(missing_kinds=missing)).create


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


def test_without_jobset_an_indexed_job_runs_torchrun_on_every_node() -> None:
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


def test_a_variant_that_distills_only_after_quantize_runs_as_one_process() -> None:
    """Its student is quantized, and a quantized student tunes on one process with the
    whole batch: the Job starts no gang whose helpers would stop at once, and its batch
    need not split over the GPUs the spec gives the healing of other variants."""
    tuned = {"name": "tuned", "steps": [
        {"quantize": {"scheme": "W4A16"}},
        {"distill": {"steps": 100, "batchSize": 3}},
    ]}  # fmt: skip
    compression = {"gpu": {"product": "nvidia-l4", "count": 2}, "nodes": 2}
    two_gangs = make_spec(variants=[CHAIN, tuned], compression=compression)
    objects = plan(two_gangs, with_base(missing_kinds=frozenset({JOBSET_KIND}))).create
    job = job_of(objects, "tuned")
    assert "completionMode" not in job["spec"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["modelpress"]
    assert job_of(objects, "slim")["spec"]["completionMode"] == "Indexed"
    before = {"name": "tuned", "steps": [
        {"distill": {"steps": 100, "batchSize": 3, "studentLayers": 8}},
        {"quantize": {"scheme": "W4A16"}},
    ]}  # fmt: skip
    with pytest.raises(ValueError, match="batchSize 3 does not split over the 4 processes"):
        make_spec(variants=[before], compression=compression)


def jobset_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == JOBSET_KIND]
    return found


def test_with_jobset_the_gang_is_one_jobset_restarted_as_a_whole() -> None:
    objects = created(jobset=True)
    gang = jobset_of(objects)
    name = gang["metadata"]["name"]
    assert name == job_of(created(), "slim")["metadata"]["name"], "the same name either way"
    assert gang["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
    assert gang["metadata"]["labels"]["modelpress.dev/variant"] == "slim"
    spec_ = gang["spec"]
    assert spec_["network"] == {"enableDNSHostnames": True, "publishNotReadyAddresses": True}
    assert spec_["failurePolicy"]["maxRestarts"] == 2  # spec.compression.backoffLimit
    (rule,) = spec_["failurePolicy"]["rules"]
    assert rule["action"] == "FailJobSet"
    assert set(rule["onJobFailureReasons"]) == {"PodFailurePolicy", "DeadlineExceeded"}
    (replicated,) = spec_["replicatedJobs"]
    assert (replicated["name"], replicated["replicas"]) == ("node", 1)
    # its Jobs carry the operator's labels, so their changes wake the model
    assert replicated["template"]["metadata"]["labels"] == gang["metadata"]["labels"]
    job = replicated["template"]["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"] == 2
    assert job["backoffLimit"] == 0, "a failed pod fails the Job; JobSet restarts the gang"
    assert "ttlSecondsAfterFinished" not in job and "ttlSecondsAfterFinished" in spec_
    pod = job["template"]["spec"]
    assert "subdomain" not in pod, "JobSet names the subdomain after itself"
    args = pod["containers"][0]["args"]
    assert args[args.index("--master-addr") + 1] == f"{name}-node-0-0.{name}"
    assert args[args.index("--node-rank") + 1] == "$(JOB_COMPLETION_INDEX)"
    valid({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "spec": job})
    assert crds.problems(gang) == [], "as JobSet's published schema admits it"
    assert not [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == name]
    assert not [o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == name]


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda g: g["spec"].update(replicatedJob=g["spec"].pop("replicatedJobs")),
         "spec.replicatedJob"),
        (lambda g: g["spec"]["failurePolicy"].update(maxRestarts="2"),
         "spec.failurePolicy.maxRestarts"),
        (lambda g: g["spec"]["failurePolicy"]["rules"][0].update(action="Restart"),
         "spec.failurePolicy.rules[0].action"),
    ],
)  # fmt: skip
def test_the_published_jobset_schema_catches_what_the_api_server_would(edit, where) -> None:
    """The check above can fail: a misspelt field, a wrong type, an unknown action."""
    gang = jobset_of(created(jobset=True))
    edit(gang)
    assert where in [p.path for p in crds.problems(gang)]


def test_with_jobset_one_node_stays_a_plain_job() -> None:
    objects = created(nodes=1, count=4, jobset=True)
    assert job_of(objects, "slim")["spec"]["template"]["spec"]["containers"][0]["args"][0] == (
        "--standalone"
    )
    assert not [o for o in objects if o["kind"] == JOBSET_KIND]


def jobset_status(**status: Any) -> dict[str, Any]:
    gang = jobset_of(created(jobset=True))
    uid = {"ownerReferences": [{"uid": "uid-1", "controller": True}]}
    return {**gang, "metadata": {**gang["metadata"], **uid}, "status": status}


def test_a_jobset_reads_as_the_job_it_runs() -> None:
    running = jobset_state(
        jobset_status(replicatedJobsStatus=[{"name": "node", "active": 1, "ready": 0}])
    )
    assert (running.active, running.ready, running.finished) == (1, 0, False)
    assert running.kind == JOBSET_KIND and running.indexed and running.owner_uid == "uid-1"
    assert running.backoff_limit == 2 and running.variant == "slim"
    assert (
        running.spec_hash
        == jobset_of(created(jobset=True))["metadata"]["annotations"]["modelpress.dev/spec-hash"]
    )
    assert running.memory_limit is not None
    done = jobset_state(jobset_status(conditions=[{"type": "Completed", "status": "True"}]))
    assert done.complete and not done.is_failed
    failed = jobset_state(
        jobset_status(
            restarts=2,
            conditions=[
                {"type": "Failed", "status": "True", "reason": "FailedJobs", "message": "x"}
            ],
        )
    )
    assert (failed.failure_reason, failed.failure_message, failed.failed) == ("FailedJobs", "x", 2)
    assert pod_selector(failed) == {"jobset.sigs.k8s.io/jobset-name": failed.name}
    assert pod_selector(JobState(name="j")) == {"job-name": "j"}


def test_an_obsolete_jobset_is_deleted_as_a_jobset_with_no_service_of_ours() -> None:
    old = jobset_state(jobset_status(conditions=[{"type": "Completed", "status": "True"}]))
    other = make_spec(variants=[PLAIN], compression={"nodes": 2})
    deleted = plan(other, with_base(jobs=(old,))).delete
    assert (JOBSET_KIND, old.name) in deleted
    assert ("Service", old.name) not in deleted and ("Job", old.name) not in deleted


def indexed_job(**changes: Any) -> JobState:
    name = job_of(created(), "slim")["metadata"]["name"]
    return JobState(name=name, owner_uid="uid-1", component="compress", variant="slim",
                    indexed=True, **changes)  # fmt: skip


def deleted_services(*jobs: JobState, services: frozenset[str]) -> list[tuple[str, str]]:
    observed = with_base(jobs=jobs, gang_services=services, missing_kinds={JOBSET_KIND})
    return [d for d in plan(spec(), observed).delete if d[0] == "Service"]


def test_a_gang_service_lives_while_its_indexed_job_runs_and_goes_once_it_ends() -> None:
    running = indexed_job(active=2)
    services = frozenset({running.name})
    assert deleted_services(running, services=services) == []
    done = indexed_job(succeeded=2, complete=True)
    assert deleted_services(done, services=services) == [("Service", done.name)]
    failed = indexed_job(failed=3, failure_reason="BackoffLimitExceeded")
    assert deleted_services(failed, services=services) == [("Service", failed.name)]


def test_a_gang_service_does_not_outlive_its_job_removed_by_its_ttl() -> None:
    locations = variant_locations(spec(), SOURCE, OperatorConfig())
    built = {key: variant_artifact(uri, 100_000_000) for key, uri in locations.values()}
    name = job_of(created(), "slim")["metadata"]["name"]
    observed = with_base(
        artifacts=built, gang_services=frozenset({name}), missing_kinds={JOBSET_KIND}
    )
    assert ("Service", name) in plan(spec(), observed).delete


def test_a_gang_service_created_again_with_its_job_is_never_deleted_in_the_same_plan() -> None:
    """The index may still show the old Service when the Job is created again."""
    name = job_of(created(), "slim")["metadata"]["name"]
    result = plan(spec(), with_base(gang_services=frozenset({name}), missing_kinds={JOBSET_KIND}))
    assert any(o["kind"] == "Service" and o["metadata"]["name"] == name for o in result.create)
    assert ("Service", name) not in result.delete


def test_a_running_gang_whose_recipe_changed_goes_with_its_service() -> None:
    stale = JobState(name="tiny-slim-0ld", owner_uid="uid-1", component="compress",
                     variant="slim", indexed=True, active=2)  # fmt: skip
    deleted = plan(
        spec(),
        with_base(
            jobs=(stale,), gang_services=frozenset({stale.name}), missing_kinds={JOBSET_KIND}
        ),
    ).delete
    assert ("Job", stale.name) in deleted and ("Service", stale.name) in deleted


@pytest.mark.parametrize("jobset", [False, True])
def test_a_gang_of_the_longest_names_still_has_valid_pod_hostnames(jobset: bool) -> None:
    """Model names of 32 characters and variant names of 20: every name the gang's
    pods get is a DNS label, however the gang runs."""
    long_chain = {**CHAIN, "name": "v" * 20}
    body = spec_dict(variants=[long_chain], compression={"nodes": 12})
    body["variants"][0]["steps"][1]["distill"]["batchSize"] = 12
    long_owner = Owner(name="m" * 32, namespace="ml", uid="uid-1", generation=1)
    missing = frozenset() if jobset else frozenset({JOBSET_KIND})
    objects = plan(
        CompressedModelSpec.model_validate(body),
        with_base(missing_kinds=missing),
        owner=long_owner,
    ).create
    (gang,) = [
        o for o in objects if o["kind"] in ("Job", JOBSET_KIND) and "-v" in o["metadata"]["name"]
    ]
    name = gang["metadata"]["name"]
    assert name.startswith("m" * 32 + "-v") and len(name) <= 52
    hostnames = (
        [f"{name}-node-0-{i}" for i in range(12)] if jobset else [f"{name}-{i}" for i in range(12)]
    )
    assert all(len(h) <= 63 for h in hostnames)
    if jobset:
        assert len(f"{name}-node-0") <= 63, "the JobSet's Job name is a label value too"
    one = created(nodes=1, count=1)
    assert (
        job_of(one, "slim")["metadata"]["name"] == job_of(created(), "slim")["metadata"]["name"]
    ), "short names are never cut: going distributed keeps them"
