"""plan_model: from a spec and what is observed to children, status and Events."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from tests.plan.conftest import (
    BASE,
    SMOLLM2,
    SOURCE,
    STORE,
    make_spec,
    spec_dict,
    variant_artifact,
)

from modelpress.api.admission import model_problems, status_problems
from modelpress.api.reasons import Reason
from modelpress.api.resource import API_VERSION, KIND, read_spec
from modelpress.config import OperatorConfig
from modelpress.plan import names
from modelpress.plan.conditions import merge_patch
from modelpress.plan.observed import (
    Blocker,
    DeploymentState,
    JobState,
    Observed,
    Owner,
    ServiceState,
)
from modelpress.plan.recipes import variant_locations
from modelpress.plan.reconcile import Plan, plan_invalid, plan_model

OWNER = Owner(name="tiny", namespace="ml", uid="uid-1", generation=3)
NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"


def plan(spec=None, observed=None, previous=None, now=NOW, config=None, owner=OWNER) -> Plan:
    """plan_model, with its status held to what the API server would store."""
    result = plan_model(
        owner,
        spec or make_spec(),
        observed or Observed(),
        config or OperatorConfig(),
        previous,
        now,
    )
    assert status_problems(result.wire_status) == []
    return result


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def variant(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in status["variants"] if v["name"] == name)


def variant_conditions(status: dict[str, Any], name: str) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in variant(status, name)["conditions"]}


def job_state(obj: dict[str, Any], **status: Any) -> JobState:
    return replace(JobState.from_object(obj), owner_uid=OWNER.uid, **status)


def built(spec=None, sizes=(100_000_000, 60_000_000), increases=(0.02, 0.05)) -> dict[str, Any]:
    spec = spec or make_spec()
    locations = variant_locations(spec, SOURCE, OperatorConfig())
    artifacts = {}
    for (key, uri), size, increase in zip(locations.values(), sizes, increases, strict=False):
        artifacts[key] = variant_artifact(uri, size, increase)
    return artifacts


def with_base(**changes: Any) -> Observed:
    return Observed(source=SOURCE, base=BASE, **changes)


# --- the base model ---------------------------------------------------------------------------


def test_first_sight_creates_the_fetch_job_and_reports_pending() -> None:
    result = plan()
    assert [o["kind"] for o in result.create] == ["Job"]
    fetch = result.create[0]
    assert fetch["metadata"]["labels"][names.LABEL_COMPONENT] == "fetch"
    assert result.apply == [] and result.delete == []
    status = result.wire_status
    assert status["observedGeneration"] == 3
    assert conditions(status) == {
        "Ready": ("False", "Fetching"),
        "Reconciling": ("True", "Fetching"),
        "Stalled": ("False", "Fetching"),
        "SourceReady": ("False", "Fetching"),
        "VariantsReady": ("False", "WaitingForSource"),
        "Serving": ("False", "WaitingForVariants"),
    }
    assert status["summary"] == {"phase": "Pending", "variants": "0/2"}
    assert status["source"] == {"job": fetch["metadata"]["name"]}
    assert all(c["lastTransitionTime"] == NOW for c in status["conditions"])
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


def test_an_existing_fetch_job_is_not_created_again() -> None:
    fetch = plan().create[0]
    running = plan(observed=Observed(jobs=(job_state(fetch, active=1),)))
    assert running.create == []
    assert conditions(running.wire_status)["SourceReady"] == ("False", "Fetching")
    assert "is running" in running.wire_status["conditions"][1]["message"]


def test_a_failed_fetch_reports_the_pod_message() -> None:
    fetch = plan().create[0]
    name = fetch["metadata"]["name"]
    failed = job_state(
        fetch, failed=3, failure_reason="BackoffLimitExceeded", failure_message="limit"
    )
    result = plan(
        observed=Observed(
            jobs=(failed,), job_messages={name: "exit code 1 (Error): 401 Unauthorized"}
        )
    )
    assert conditions(result.wire_status)["SourceReady"] == ("False", "FetchFailed")
    message = next(c for c in result.wire_status["conditions"] if c["type"] == "SourceReady")[
        "message"
    ]
    assert "BackoffLimitExceeded" in message and "401 Unauthorized" in message
    assert result.wire_status["summary"]["phase"] == "Failed"
    assert result.create == []


def test_a_succeeded_fetch_without_a_record_is_reported() -> None:
    fetch = plan().create[0]
    result = plan(observed=Observed(jobs=(job_state(fetch, succeeded=1, complete=True),)))
    assert conditions(result.wire_status)["SourceReady"] == ("False", "FetchIncomplete")


def test_a_missing_hub_token_secret_blocks_the_fetch() -> None:
    blocker = Blocker(Reason.SECRET_NOT_FOUND, "Hub token Secret 'hub' does not exist")
    result = plan(observed=Observed(source_blocker=blocker))
    assert result.create == []
    assert conditions(result.wire_status)["SourceReady"] == ("False", "SecretNotFound")


def test_an_unreadable_store_changes_nothing_and_says_why() -> None:
    spec = make_spec()
    stale = job_state(plan(spec).create[0])
    stale = replace(stale, name="tiny-fetch-obsolete")
    result = plan(
        spec,
        Observed(
            jobs=(stale,), store_blocker=Blocker(Reason.STORE_UNAVAILABLE, "endpoint unreachable")
        ),
    )
    assert result.create == [] and result.delete == [] and result.apply == []
    assert conditions(result.wire_status)["SourceReady"] == ("False", "StoreUnavailable")
    assert conditions(result.wire_status)["Ready"] == ("False", "StoreUnavailable")


# --- the variants ---------------------------------------------------------------------------


def test_once_the_base_is_stored_every_variant_gets_a_job() -> None:
    result = plan(observed=with_base())
    created = {o["metadata"]["labels"][names.LABEL_VARIANT] for o in result.create}
    assert created == {"w8", "w4"}
    status = result.wire_status
    assert conditions(status)["SourceReady"] == ("True", "Stored")
    assert conditions(status)["VariantsReady"] == ("False", "Compressing")
    assert status["source"]["uri"] == SOURCE.uri and status["source"]["bytes"] == BASE.total_bytes
    locations = variant_locations(make_spec(), SOURCE, OperatorConfig())
    for name in ("w8", "w4"):
        entry = variant(status, name)
        assert (entry["key"], entry["artifactUri"]) == locations[name]
        assert entry["job"] in {o["metadata"]["name"] for o in result.create}
        assert variant_conditions(status, name)["Compressed"] == ("False", "Compressing")
    assert status["summary"]["phase"] == "Compressing"


def test_an_artifact_already_in_the_store_is_never_computed_again() -> None:
    artifacts = built()
    result = plan(observed=with_base(artifacts=artifacts))
    assert [o["kind"] for o in result.create] == ["NetworkPolicy", "Deployment", "Service"]
    assert conditions(result.wire_status)["VariantsReady"][0] == "True"


def test_a_retrying_job_and_then_a_failed_one() -> None:
    first = plan(observed=with_base())
    w4 = next(o for o in first.create if o["metadata"]["labels"][names.LABEL_VARIANT] == "w4")
    w8 = next(o for o in first.create if o["metadata"]["labels"][names.LABEL_VARIANT] == "w8")
    name = w4["metadata"]["name"]
    messages = {name: "exit code 1 (Error): OutOfMemory: CUDA out of memory"}
    retrying = plan(
        observed=with_base(
            jobs=(job_state(w4, failed=1, active=1), job_state(w8, active=1)), job_messages=messages
        )
    )
    assert variant_conditions(retrying.wire_status, "w4")["Compressed"] == ("False", "JobRetrying")
    assert (
        "1 of 3 attempts failed" in variant(retrying.wire_status, "w4")["conditions"][1]["message"]
    )
    assert conditions(retrying.wire_status)["VariantsReady"] == ("False", "JobRetrying")
    assert any(e.type == "Warning" and e.reason == "JobRetrying" for e in retrying.events)

    failed = job_state(
        w4,
        failed=3,
        failure_reason="BackoffLimitExceeded",
        failure_message="Job has reached the specified backoff limit",
    )
    result = plan(
        observed=with_base(jobs=(failed, job_state(w8, active=1)), job_messages=messages),
        previous=retrying.wire_status,
    )
    compressed = variant(result.wire_status, "w4")["conditions"][1]
    # Out of GPU memory is told apart from other failures, with the fields to change.
    assert (compressed["status"], compressed["reason"]) == ("False", "OutOfMemory")
    assert "CUDA out of memory" in compressed["message"]
    assert "spec.compression.gpu" in compressed["message"]
    assert conditions(result.wire_status)["VariantsReady"] == ("False", "OutOfMemory")
    assert result.create == [], "a failed Job is not replaced until something changes"
    assert any(e.type == "Warning" and e.reason == "OutOfMemory" for e in result.events)

    other = {name: "exit code 1 (Error): ValueError: bad tensor"}
    result = plan(observed=with_base(jobs=(failed,), job_messages=other))
    compressed = variant(result.wire_status, "w4")["conditions"][1]
    assert (compressed["status"], compressed["reason"]) == ("False", "JobFailed")
    assert "BackoffLimitExceeded" in compressed["message"] and "bad tensor" in compressed["message"]


def test_an_oom_killed_job_names_the_memory_to_raise() -> None:
    first = plan(observed=with_base())
    w4 = next(o for o in first.create if o["metadata"]["labels"][names.LABEL_VARIANT] == "w4")
    failed = job_state(w4, failed=1, failure_reason="BackoffLimitExceeded")
    killed = {w4["metadata"]["name"]: "exit code 137 (OOMKilled)"}
    result = plan(observed=with_base(jobs=(failed,), job_messages=killed))
    compressed = variant(result.wire_status, "w4")["conditions"][1]
    limit = w4["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert compressed["reason"] == "OutOfMemory"
    assert f"raise spec.compression.memory above {limit}" in compressed["message"]


def test_a_variant_whose_compression_cannot_fit_its_gpu_gets_no_job() -> None:
    config = OperatorConfig.model_validate({"gpuCatalog": {"mini": {"memoryGiB": 0.01}}})
    spec = make_spec(compression={"gpu": {"product": "mini"}})
    result = plan(spec, with_base(), config=config)
    assert result.create == []
    assert variant_conditions(result.wire_status, "w4")["Compressed"] == (
        "False",
        "CompressionDoesNotFit",
    )
    assert conditions(result.wire_status)["VariantsReady"] == ("False", "CompressionDoesNotFit")


def test_removing_a_variant_removes_its_job_and_editing_one_replaces_only_its_job() -> None:
    spec = make_spec()
    first = plan(spec, with_base())
    observed_jobs = tuple(job_state(o, active=1) for o in first.create)
    only_w8 = make_spec(variants=[spec_dict()["variants"][0]])
    removed = plan(only_w8, with_base(jobs=observed_jobs))
    w4_job = next(o["metadata"]["name"] for o in first.create if "w4" in o["metadata"]["name"])
    assert removed.delete == [("Job", w4_job)] and removed.create == []

    edited = make_spec(
        variants=[
            spec_dict()["variants"][0],
            {"name": "w4", "quantize": {"scheme": "W4A16", "algorithm": "gptq", "groupSize": 32}},
        ]
    )
    changed = plan(edited, with_base(jobs=observed_jobs))
    assert changed.delete == [("Job", w4_job)]
    assert [o["metadata"]["labels"][names.LABEL_VARIANT] for o in changed.create] == ["w4"]


def test_jobs_of_other_owners_are_ignored() -> None:
    first = plan(observed=with_base())
    foreign = tuple(
        replace(job_state(o), owner_uid="someone-else", name=o["metadata"]["name"] + "x")
        for o in first.create
    )
    result = plan(observed=with_base(jobs=foreign))
    assert result.delete == []
    assert len(result.create) == 2


def test_compression_jobs_are_kept_while_the_base_model_is_unknown() -> None:
    first = plan(observed=with_base())
    running = tuple(job_state(o, active=1) for o in first.create)
    result = plan(observed=Observed(jobs=running))
    assert result.delete == []


# --- quality, fit and serving --------------------------------------------------------------------


def test_everything_built_serves_the_smallest_passing_variant() -> None:
    result = plan(observed=with_base(artifacts=built()))
    assert result.apply == []
    assert sorted(o["kind"] for o in result.create) == ["Deployment", "NetworkPolicy", "Service"]
    deployment = next(o for o in result.create if o["kind"] == "Deployment")
    w4_key = variant_locations(make_spec(), SOURCE, OperatorConfig())["w4"][0]
    assert deployment["spec"]["template"]["metadata"]["labels"][names.LABEL_KEY] == w4_key
    status = result.wire_status
    assert conditions(status)["Serving"] == ("False", "RollingOut")
    assert status["serving"]["variant"] == "w4"
    assert status["serving"]["endpoint"] == "http://tiny.ml.svc:8000/v1"
    assert status["serving"]["strategy"] == "RollingUpdate"
    assert status["summary"]["phase"] == "Serving"
    entry = variant(status, "w4")
    assert entry["bytes"] == 60_000_000
    assert entry["sizeRatio"] == round(60_000_000 / BASE.total_bytes, 4)
    assert entry["parameters"] == 134_515_008 and entry["bitsPerWeight"] == 4.5
    assert entry["metrics"]["perplexityIncrease"] == 0.05
    assert entry["footprint"]["fits"] is True and entry["footprint"]["gpus"] == 0
    assert variant_conditions(status, "w4") == {
        "Ready": ("True", "Ready"),
        "Compressed": ("True", "Published"),
        "QualityGate": ("True", "Passed"),
        "Fits": ("True", "Fits"),
    }


def rolled_out(result: Plan, **changes: Any) -> DeploymentState:
    deployment = next(o for o in result.create + result.apply if o["kind"] == "Deployment")
    state = DeploymentState.from_object(deployment)
    ready = {"ready_replicas": 1, "updated_replicas": 1, "available_replicas": 1}
    return replace(state, owner_uid=OWNER.uid, **{**ready, **changes})


def service_state(result: Plan) -> ServiceState:
    service = next(o for o in result.create + result.apply if o["kind"] == "Service")
    return replace(ServiceState.from_object(service), owner_uid=OWNER.uid)


def policy_states(result: Plan) -> dict[str, ServiceState]:
    return {
        o["metadata"]["name"]: replace(ServiceState.from_object(o), owner_uid=OWNER.uid)
        for o in result.create + result.apply
        if o["kind"] == "NetworkPolicy"
    }


def test_a_rolled_out_deployment_makes_the_model_ready_and_nothing_is_reapplied() -> None:
    first = plan(observed=with_base(artifacts=built()))
    observed = with_base(
        artifacts=built(),
        deployment=rolled_out(first),
        service=service_state(first),
        network_policies=policy_states(first),
    )
    result = plan(observed=observed, previous=first.wire_status, now=LATER)
    assert result.apply == [] and result.create == [] and result.delete == []
    assert conditions(result.wire_status)["Ready"] == ("True", "Ready")
    assert conditions(result.wire_status)["Serving"] == ("True", "Available")
    summary = result.wire_status["summary"]
    assert summary == {
        "phase": "Ready",
        "variants": "2/2",
        "gpus": 0,
        "sizeRatio": round(60_000_000 / BASE.total_bytes, 4),
        "perplexityIncrease": 0.05,
    }
    again = plan(observed=observed, previous=result.wire_status, now="2026-01-02T00:00:00Z")
    assert again.wire_status == result.wire_status, "an unchanged world gives an unchanged status"
    assert merge_patch(result.wire_status, again.wire_status) == {}
    assert again.events == []


def test_a_stalled_rollout_is_reported() -> None:
    first = plan(observed=with_base(artifacts=built()))
    stalled = rolled_out(
        first,
        ready_replicas=0,
        available_replicas=0,
        stalled_message="ReplicaSet has timed out progressing",
    )
    result = plan(
        observed=with_base(artifacts=built(), deployment=stalled, service=service_state(first))
    )
    assert conditions(result.wire_status)["Serving"] == ("False", "RolloutStalled")


def test_a_variant_failing_the_gate_is_never_served_and_the_previous_keeps_serving() -> None:
    named = make_spec(serving={"variant": "w4", "maxModelLen": 2048, "maxNumSeqs": 4})
    good = plan(named, with_base(artifacts=built(named)))
    previous = rolled_out(good)
    worse = built(named, increases=(0.02, 0.4))
    result = plan(
        named,
        with_base(
            artifacts=worse,
            deployment=replace(previous, spec_hash="old"),
            service=service_state(good),
        ),
    )
    assert result.apply == [] and result.delete == []
    serving = next(c for c in result.wire_status["conditions"] if c["type"] == "Serving")
    assert (serving["status"], serving["reason"]) == ("False", "QualityGateFailed")
    assert "+40.00%" in serving["message"] and "w4 keeps serving" in serving["message"]
    assert result.wire_status["serving"]["variant"] == "w4"
    assert variant_conditions(result.wire_status, "w4")["QualityGate"] == (
        "False",
        "QualityGateFailed",
    )


def test_a_variant_that_does_not_fit_says_so_with_numbers() -> None:
    config = OperatorConfig.model_validate({"gpuCatalog": {"mini": {"memoryGiB": 0.5}}})
    spec = make_spec(serving={"gpu": {"product": "mini"}, "maxModelLen": 2048})
    result = plan(spec, with_base(artifacts=built(spec)), config=config)
    fits = variant(result.wire_status, "w4")["conditions"][3]
    assert (fits["type"], fits["status"], fits["reason"]) == ("Fits", "False", "DoesNotFit")
    assert "GiB" in fits["message"]
    assert conditions(result.wire_status)["Serving"] == ("False", "NoVariantQualifies")
    assert result.apply == []


def test_an_unknown_serving_gpu_is_a_clear_condition() -> None:
    spec = make_spec(serving={"gpu": {"product": "nvidia-b999"}})
    result = plan(spec, with_base(artifacts=built(spec)))
    serving = next(c for c in result.wire_status["conditions"] if c["type"] == "Serving")
    assert serving["reason"] == "UnknownGpuProduct" and "nvidia-l4" in serving["message"]
    assert variant_conditions(result.wire_status, "w8")["Fits"] == ("False", "UnknownGpuProduct")
    assert result.apply == []


def test_a_max_model_len_beyond_the_context_is_a_sizing_failure() -> None:
    spec = make_spec(serving={"maxModelLen": 100_000})
    result = plan(spec, with_base(artifacts=built(spec)))
    fits = variant(result.wire_status, "w8")["conditions"][3]
    assert fits["reason"] == "SizingFailed" and "maxModelLen" in fits["message"]


def test_serving_none_removes_the_deployment_and_service_and_is_still_ready() -> None:
    first = plan(observed=with_base(artifacts=built()))
    spec = make_spec(serving={"variant": "none"})
    result = plan(
        spec,
        with_base(
            artifacts=built(spec), deployment=rolled_out(first), service=service_state(first)
        ),
    )
    assert sorted(result.delete) == [("Deployment", "tiny-vllm"), ("Service", "tiny")]
    assert conditions(result.wire_status)["Serving"] == ("False", "ServingDisabled")
    assert conditions(result.wire_status)["Ready"] == ("True", "Ready")
    assert "serving" not in result.wire_status


def test_while_auto_waits_the_current_deployment_keeps_serving() -> None:
    first = plan(observed=with_base(artifacts=built()))
    current = rolled_out(first)
    spec = make_spec(
        variants=[
            *spec_dict()["variants"],
            {"name": "w2", "quantize": {"scheme": "W4A16", "algorithm": "rtn", "groupSize": 64}},
        ]
    )
    result = plan(
        spec, with_base(artifacts=built(spec), deployment=current, service=service_state(first))
    )
    assert result.apply == []
    assert conditions(result.wire_status)["Serving"] == ("True", "Available")
    assert (
        "waiting for w2"
        in next(c for c in result.wire_status["conditions"] if c["type"] == "Serving")["message"]
    )
    assert result.wire_status["serving"]["variant"] == "w4"


def test_gpu_serving_with_one_replica_recreates() -> None:
    spec = make_spec(serving={"gpu": {"product": "nvidia-l4"}, "maxModelLen": 2048})
    result = plan(spec, with_base(artifacts=built(spec)))
    assert result.wire_status["serving"]["strategy"] == "Recreate"
    assert result.wire_status["serving"]["gpus"] == 1


# --- transitions and invalid specs --------------------------------------------------------------


def test_transition_times_move_only_when_a_status_changes() -> None:
    running = tuple(job_state(o, active=1) for o in plan(observed=with_base()).create)
    first = plan(observed=with_base(jobs=running))
    second = plan(observed=with_base(jobs=running), previous=first.wire_status, now=LATER)
    assert second.create == []
    assert second.wire_status == first.wire_status
    assert second.events == []
    third = plan(
        observed=with_base(jobs=running, artifacts=built()), previous=second.wire_status, now=LATER
    )
    times = {c["type"]: c["lastTransitionTime"] for c in third.wire_status["conditions"]}
    assert times["SourceReady"] == NOW and times["VariantsReady"] == LATER
    assert third.events == [], "built and rolling out: progress, told by the status"


def test_spec_problems_name_the_field_as_validate_does() -> None:
    raw = spec_dict(
        variants=[{"name": "f", "quantize": {"scheme": "FP8_DYNAMIC", "algorithm": "gptq"}}]
    )
    spec, problems = read_spec(raw)
    assert spec is None
    assert len(problems) == 1 and problems[0].startswith("spec.variants[0].quantize")
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "m"}, "spec": raw}
    assert [str(p) for p in model_problems(manifest)] == problems
    assert read_spec(spec_dict())[1] == []


def test_an_invalid_spec_touches_no_child_and_keeps_what_was_known() -> None:
    served = plan(observed=with_base(artifacts=built())).wire_status
    result = plan_invalid(OWNER, ["spec.variants.0.quantize: bad"], served, LATER)
    assert result.create == result.apply == result.delete == []
    assert status_problems(result.wire_status) == []
    ready = next(c for c in result.wire_status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "InvalidSpec",
        "spec.variants.0.quantize: bad",
    )
    assert result.wire_status["serving"] == served["serving"]
    assert result.wire_status["summary"]["phase"] == "Failed"
    assert [e.reason for e in result.events] == ["InvalidSpec"]
    assert (
        plan_invalid(OWNER, ["spec.variants.0.quantize: bad"], result.wire_status, "later").events
        == []
    )


@pytest.mark.parametrize(
    "written_by_hand",
    [
        {"conditions": "nonsense", "bogus": {"x": 1}},
        {"variants": [{"name": 3, "conditions": [{"type": "Ready"}]}]},
        {"source": {"job": ["not", "a", "name"]}, "summary": {"phase": 7}},
    ],
)
def test_a_status_this_version_cannot_read_is_replaced_by_the_truth(written_by_hand) -> None:
    honest = plan(observed=with_base(artifacts=built()))
    result = plan(observed=with_base(artifacts=built()), previous=written_by_hand)
    assert result.wire_status["conditions"] == honest.wire_status["conditions"]
    patch = merge_patch(written_by_hand, result.wire_status)
    assert all(patch.get(key) is None for key in written_by_hand.keys() - honest.wire_status.keys())


@pytest.mark.parametrize("variant_name", ["v" * 20, "a"])
def test_every_child_name_fits_a_label_value(variant_name: str) -> None:
    owner = replace(OWNER, name="m" * 32)
    spec = make_spec(
        variants=[{"name": variant_name, "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}]
    )
    for observed in (Observed(), with_base(), with_base(artifacts=built(spec))):
        result = plan(spec, observed, owner=owner)
        for obj in result.create + result.apply:
            assert len(obj["metadata"]["name"]) <= 63
            assert all(len(v) <= 63 for v in obj["metadata"]["labels"].values())


def test_the_variant_key_includes_the_compressor_version_or_custom_image() -> None:
    spec = make_spec()
    custom = make_spec(compression={"image": "example/compressor:dev"})
    config = OperatorConfig()
    default_keys = variant_locations(spec, SOURCE, config)
    assert variant_locations(custom, SOURCE, config) != default_keys
    newer = OperatorConfig.model_validate({"compressorVersion": "9.9.9"})
    assert variant_locations(spec, SOURCE, newer) != default_keys
    assert all(uri.startswith(f"{STORE}artifacts/") for _, uri in default_keys.values())


@pytest.mark.parametrize("change", ["ttl", "retries", "image"])
def test_new_job_settings_never_replace_a_running_job_but_rerun_a_failed_one(change: str) -> None:
    first = plan(observed=with_base())
    w4 = next(o for o in first.create if o["metadata"]["labels"][names.LABEL_VARIANT] == "w4")
    spec, config = make_spec(), OperatorConfig()
    if change == "ttl":
        config = OperatorConfig.model_validate({"jobs": {"ttlSecondsAfterFinished": 60}})
    elif change == "retries":
        spec = make_spec(compression={"backoffLimit": 4})
    else:
        config = OperatorConfig.model_validate({"images": {"compressor": "r.example.com/c:2"}})

    running = job_state(w4, active=1)
    result = plan(spec, with_base(jobs=(running,)), config=config)
    assert ("Job", w4["metadata"]["name"]) not in result.delete, "a running Job is left alone"
    assert w4["metadata"]["name"] not in [o["metadata"]["name"] for o in result.create]

    failed = job_state(w4, failed=1, failure_reason="BackoffLimitExceeded")
    result = plan(spec, with_base(jobs=(failed,)), config=config)
    assert ("Job", w4["metadata"]["name"]) in result.delete, "a failed one runs again"
    assert (
        "runs again with the current ones"
        in variant(result.wire_status, "w4")["conditions"][1]["message"]
    )
    again = plan(spec, with_base(), config=config)
    recreated = next(o for o in again.create if o["metadata"]["name"] == w4["metadata"]["name"])
    assert recreated["metadata"]["annotations"] != w4["metadata"]["annotations"]

    same = plan(observed=with_base(jobs=(failed,)))
    assert ("Job", w4["metadata"]["name"]) not in same.delete, "same settings: the failure stands"
    assert variant_conditions(same.wire_status, "w4")["Compressed"] == ("False", "JobFailed")


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="evil/vllm:1"),
        lambda d: d["spec"].update(replicas=7),
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}
        ),
    ],
    ids=["kubectl set image", "kubectl scale", "kubectl set env"],
)
def test_a_deployment_changed_behind_the_operators_back_is_put_back(edit: Any) -> None:
    first = plan(observed=with_base(artifacts=built()))
    desired = next(o for o in first.create if o["kind"] == "Deployment")
    live = copy.deepcopy(desired)
    edit(live)
    live["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"  # defaults are no drift
    current = replace(DeploymentState.from_object(live), owner_uid=OWNER.uid, ready_replicas=1,
                      updated_replicas=1, available_replicas=1)  # fmt: skip
    observed = with_base(artifacts=built(), deployment=current, service=service_state(first),
                         network_policies=policy_states(first))  # fmt: skip
    result = plan(observed=observed, previous=first.wire_status, now=LATER)
    assert [o["kind"] for o in result.apply] == ["Deployment"]


def test_defaults_the_api_server_adds_are_not_drift() -> None:
    first = plan(observed=with_base(artifacts=built()))
    live = copy.deepcopy(next(o for o in first.create if o["kind"] == "Deployment"))
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    for entry in container["env"]:
        if "valueFrom" in entry and "fieldRef" in entry["valueFrom"]:
            entry["valueFrom"]["fieldRef"]["apiVersion"] = "v1"
    current = replace(DeploymentState.from_object(live), owner_uid=OWNER.uid, ready_replicas=1,
                      updated_replicas=1, available_replicas=1)  # fmt: skip
    observed = with_base(artifacts=built(), deployment=current, service=service_state(first),
                         network_policies=policy_states(first))  # fmt: skip
    assert plan(observed=observed, previous=first.wire_status, now=LATER).apply == []


def test_a_failure_is_remembered_after_its_job_is_gone_until_something_changes() -> None:
    first = plan(observed=with_base())
    w4 = next(o for o in first.create if o["metadata"]["labels"][names.LABEL_VARIANT] == "w4")
    name = w4["metadata"]["name"]
    failed = job_state(w4, failed=2, failure_reason="BackoffLimitExceeded")
    seen = plan(observed=with_base(jobs=(failed,)), previous=first.wire_status)
    assert variant(seen.wire_status, "w4")["failedJob"]["name"] == name

    # The Job's TTL removes it: it is not created again, on a GPU, for nothing.
    gone = plan(observed=with_base(), previous=seen.wire_status, now=LATER)
    assert name not in [o["metadata"]["name"] for o in gone.create]
    compressed = variant(gone.wire_status, "w4")["conditions"][1]
    assert compressed["reason"] == "JobFailed" and "modelpress.dev/retry" in compressed["message"]
    assert plan(observed=with_base(), previous=gone.wire_status).create == gone.create, "stable"

    # The user asks for another try: a new value of the annotation runs it again.
    retried = plan(observed=with_base(), previous=gone.wire_status, owner=replace(OWNER, retry="1"))
    assert name in [o["metadata"]["name"] for o in retried.create]
    # New settings run it again too.
    more = plan(make_spec(compression={"memory": "64Gi"}), with_base(), previous=gone.wire_status)
    assert name in [o["metadata"]["name"] for o in more.create]


def test_an_artifact_removed_after_it_was_published_is_computed_again() -> None:
    """A repair or a deletion removed it: its completed Job runs again, not PublishMissing."""
    first = plan(observed=with_base(artifacts=built()))
    key = variant(first.wire_status, "w4")["key"]
    w4_job = next(
        o for o in plan(observed=with_base()).create
        if o["metadata"]["labels"][names.LABEL_VARIANT] == "w4"
    )  # fmt: skip
    done = job_state(w4_job, succeeded=1, complete=True)
    remaining = {k: a for k, a in built().items() if k != key}
    result = plan(observed=with_base(artifacts=remaining, jobs=(done,)), previous=first.wire_status)
    assert ("Job", w4_job["metadata"]["name"]) in result.delete, "run again"
    assert variant_conditions(result.wire_status, "w4")["Compressed"] == ("False", "Compressing")

    never = plan(observed=with_base(artifacts=remaining, jobs=(done,)))  # never published
    assert variant_conditions(never.wire_status, "w4")["Compressed"][1] == "PublishMissing"


def quantized_config(bits: int, **group: Any) -> dict[str, Any]:
    weights = {"num_bits": bits, "type": "int", "symmetric": True, "strategy": "channel"}
    config_groups = {"group_0": {"targets": ["Linear"], "weights": weights, **group}}
    return {**SMOLLM2, "quantization_config": {"config_groups": config_groups}}


@pytest.mark.parametrize(
    ("bits", "group", "gpu", "int4_kernel", "fits"),
    [
        (8, {}, None, True, False),  # W8A16 on CPU: vLLM has no kernel
        (8, {}, {"product": "nvidia-l4"}, True, True),  # the same on a GPU
        (4, {}, None, True, True),  # W4A16 (and its mixed-precision bf16 blocks) on CPU
        (4, {}, None, False, False),  # ... but not on CPUs without AVX-512
        (4, {}, {"product": "nvidia-l4"}, False, True),  # which do not matter on a GPU
        (8, {"input_activations": {"num_bits": 8, "type": "int"}}, None, True, True),  # W8A8
    ],
)
def test_a_scheme_vllm_cannot_run_on_cpu_is_never_served_there(
    bits, group, gpu, int4_kernel, fits
) -> None:
    serving = {"variant": "w8", "maxModelLen": 2048, "maxNumSeqs": 4}
    spec = make_spec(serving=serving | ({"gpu": gpu} if gpu else {}))
    config = OperatorConfig(cpu_int4_kernel=int4_kernel)
    locations = variant_locations(spec, SOURCE, config)
    artifacts = {
        key: variant_artifact(uri, 100_000_000, config=quantized_config(bits, **group))
        for key, uri in locations.values()
    }
    result = plan(spec, with_base(artifacts=artifacts), config=config)
    verdict = variant_conditions(result.wire_status, "w8")["Fits"]
    if fits:
        assert verdict == ("True", "Fits")
        return
    assert verdict == ("False", "NoCpuKernel")
    serving_condition = conditions(result.wire_status)["Serving"]
    assert serving_condition == ("False", "NoCpuKernel")
    message = next(c["message"] for c in result.wire_status["conditions"] if c["type"] == "Serving")
    expected = "no vLLM CPU kernel" if bits == 8 else "AVX-512 CPUs only"
    assert expected in message and "spec.serving.gpu" in message
    assert result.apply == []


AVX512 = {"feature.node.kubernetes.io/cpu-cpuid.AVX512F": "true"}


@pytest.mark.parametrize(("config_json", "placed"), [(quantized_config(4), True), (SMOLLM2, False)])
def test_an_int4_variant_serves_on_cpu_only_on_the_nodes_that_run_int4(config_json, placed):
    """In a cluster where only some CPU nodes have AVX-512, the operator's
    cpuInt4NodeSelector puts W4A16 pods on them; an unquantized variant runs anywhere."""
    serving = {"variant": "w8", "maxModelLen": 2048, "maxNumSeqs": 4}
    spec = make_spec(serving=serving)
    config = OperatorConfig(cpu_int4_node_selector=AVX512)
    locations = variant_locations(spec, SOURCE, config)
    artifacts = {
        key: variant_artifact(uri, 100_000_000, config=config_json)
        for key, uri in locations.values()
    }
    result = plan(spec, with_base(artifacts=artifacts), config=config)
    deployment = next(o for o in result.create + result.apply if o["kind"] == "Deployment")
    selector = deployment["spec"]["template"]["spec"].get("nodeSelector", {})
    assert (selector.items() >= AVX512.items()) is placed
