"""spec.serving.autoscaling: the ScaledObject or HPA beside the Deployment, GPU-aware bounds,
the cold start in status, and every way it cannot be done said in the Serving condition."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from tests.plan.conftest import make_spec, spec_dict
from tests.plan.test_plan_reconcile import (
    OWNER,
    built,
    conditions,
    plan,
    rolled_out,
    service_state,
    with_base,
)

from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import AutoscalingStatus, ColdStart, ServingStatus
from modelpress.config import OperatorConfig
from modelpress.plan import names
from modelpress.plan.autoscaling import cold_start, signal_query
from modelpress.plan.observed import AutoscalerState, Observed, PodTiming
from modelpress.plan.reconcile import Plan

KUBERNETES_VERSIONS = ("1.29.0", "1.35.0")


def autoscaled(**autoscaling: Any) -> CompressedModelSpec:
    serving = spec_dict()["serving"] | {"autoscaling": {"maxReplicas": 4, **autoscaling}}
    return make_spec(serving=serving)


def on_gpu(**autoscaling: Any) -> CompressedModelSpec:
    serving = {"maxModelLen": 2048, "gpu": {"product": "nvidia-l4"}}
    return make_spec(serving=serving | {"autoscaling": {"maxReplicas": 8, **autoscaling}})


def child(result: Plan, kind: str) -> dict[str, Any]:
    found = [o for o in result.create + result.apply if o["kind"] == kind]
    assert len(found) == 1, f"one {kind} expected among {[o['kind'] for o in found]}"
    return found[0]


def first_plan(spec: CompressedModelSpec, keda: bool = False, config=None, **seen: Any) -> Plan:
    return plan(spec, with_base(artifacts=built(spec), keda_served=keda, **seen), config=config)


def seen_autoscaler(obj: dict[str, Any], **changes: Any) -> AutoscalerState:
    return replace(AutoscalerState.from_object(obj), owner_uid=OWNER.uid, **changes)


@functools.cache
def _schema_cache() -> None:
    kubernetes_validate.utils.schema_contents = functools.cache(
        kubernetes_validate.utils.schema_contents
    )


def validate_builtin(obj: dict[str, Any]) -> None:
    _schema_cache()
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def validate_scaled_object(obj: dict[str, Any]) -> None:
    """Against KEDA's published ScaledObject schema (cloudcoil's models, generated from
    KEDA's CRD). Those models ignore unknown fields, so a field they drop is one KEDA
    does not know: the round trip must give back exactly what was rendered."""
    model = ScaledObject.model_validate(obj)
    assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj


# --- what is rendered -----------------------------------------------------------------------


def test_without_keda_an_hpa_scales_the_deployment_on_external_metrics() -> None:
    result = first_plan(autoscaled())
    deployment = child(result, "Deployment")
    assert "replicas" not in deployment["spec"], "the autoscaler owns the count"
    assert deployment["metadata"]["annotations"][names.ANNOTATION_AUTOSCALER] == (
        "HorizontalPodAutoscaler"
    )
    hpa = child(result, "HorizontalPodAutoscaler")
    validate_builtin(hpa)
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tiny-vllm",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 4)
    external = spec["metrics"][0]["external"]
    assert external["metric"] == {
        "name": "vllm_num_requests_waiting",
        "selector": {"matchLabels": {"model_name": "tiny"}},
    }
    assert external["target"] == {"type": "AverageValue", "averageValue": "4"}
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    serving = result.wire_status["serving"]
    assert serving["autoscaling"] == {
        "kind": "HorizontalPodAutoscaler",
        "name": "tiny-vllm",
        "minReplicas": 1,
        "maxReplicas": 4,
    }


def test_kv_cache_usage_targets_a_fraction_as_a_quantity() -> None:
    hpa = child(first_plan(autoscaled(metric="kvCacheUsage")), "HorizontalPodAutoscaler")
    external = hpa["spec"]["metrics"][0]["external"]
    assert external["metric"]["name"] == "vllm_kv_cache_usage_perc"
    assert external["target"]["averageValue"] == "800m"


def test_with_keda_a_scaled_object_queries_vllm_through_prometheus() -> None:
    result = first_plan(autoscaled(target=6), keda=True)
    scaled = child(result, "ScaledObject")
    validate_scaled_object(scaled)
    assert not [o for o in result.create if o["kind"] == "HorizontalPodAutoscaler"]
    spec = scaled["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["threshold"] == "6"
    assert trigger["metadata"]["query"] == (
        'sum(vllm:num_requests_waiting{namespace="ml",model_name="tiny"}) or vector(0)'
    )
    assert trigger["metadata"]["serverAddress"] == OperatorConfig().autoscaling.prometheus_address
    deployment = child(result, "Deployment")
    assert deployment["metadata"]["annotations"][names.ANNOTATION_AUTOSCALER] == "ScaledObject"


def test_the_query_quotes_what_it_is_given() -> None:
    query = signal_query('we"ird', "ns", "kvCacheUsage")
    assert (
        query == 'sum(vllm:kv_cache_usage_perc{namespace="ns",model_name="we\\"ird"}) or vector(0)'
    )


def test_scale_to_zero_with_keda_wakes_on_the_users_query_and_asks_for_one_replica() -> None:
    spec = autoscaled(minReplicas=0, wakeQuery='sum(rate(gateway_requests{model="tiny"}[2m]))')
    scaled = child(first_plan(spec, keda=True), "ScaledObject")
    validate_scaled_object(scaled)
    assert scaled["spec"]["minReplicaCount"] == 0
    wake = scaled["spec"]["triggers"][1]
    assert wake["name"] == "wake"
    assert wake["metadata"]["query"] == (
        'max((sum(rate(gateway_requests{model="tiny"}[2m]))) > bool 0) or vector(0)'
    )
    assert (wake["metadata"]["threshold"], wake["metadata"]["activationThreshold"]) == ("1", "0")


def test_scale_to_zero_without_keda_is_refused_and_nothing_changes() -> None:
    spec = autoscaled(minReplicas=0, wakeQuery="vector(1)")
    result = first_plan(spec)
    assert conditions(result.wire_status)["Serving"] == ("False", "ScaleToZeroUnavailable")
    assert not [o for o in result.create if o["kind"] in ("Deployment", "HorizontalPodAutoscaler")]
    message = next(c for c in result.wire_status["conditions"] if c["type"] == "Serving")
    assert "minReplicas to 1 or more, or install KEDA" in message["message"]


def test_an_engine_configured_to_keda_uses_keda_without_looking() -> None:
    config = OperatorConfig.model_validate({"autoscaling": {"engine": "keda"}})
    assert child(first_plan(autoscaled(), config=config), "ScaledObject")


# --- GPUs -----------------------------------------------------------------------------------


def test_gpu_replicas_are_capped_at_what_the_platform_has_and_added_one_at_a_time() -> None:
    config = OperatorConfig.model_validate({"gpuCatalog": {"nvidia-l4": {"available": 3}}})
    result = first_plan(on_gpu(), config=config)
    hpa = child(result, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 3
    assert hpa["spec"]["behavior"]["scaleUp"]["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": 60}
    ]
    deployment = child(result, "Deployment")
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }, "a rollout never waits for a GPU a scale-up holds"
    assert result.wire_status["serving"]["autoscaling"]["maxReplicas"] == 3


def test_cpu_scales_up_in_bigger_steps() -> None:
    hpa = child(first_plan(autoscaled()), "HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["value"] == 4


def test_a_minimum_the_gpus_cannot_hold_is_a_failure_with_numbers() -> None:
    config = OperatorConfig.model_validate({"gpuCatalog": {"nvidia-l4": {"available": 1}}})
    result = first_plan(on_gpu(minReplicas=2), config=config)
    assert conditions(result.wire_status)["Serving"] == ("False", "ReplicasDoNotFit")
    message = next(c for c in result.wire_status["conditions"] if c["type"] == "Serving")
    assert "minReplicas 2 needs 2 nvidia-l4 GPUs; the platform has 1" in message["message"]
    assert not [o for o in result.create if o["kind"] == "Deployment"]


# --- living with it -------------------------------------------------------------------------


def served(spec: CompressedModelSpec, keda: bool = False, replicas: int = 3, **seen: Any) -> Plan:
    first = first_plan(spec, keda)
    kind = "ScaledObject" if keda else "HorizontalPodAutoscaler"
    live = rolled_out(first, replicas=replicas, ready_replicas=replicas, updated_replicas=replicas)
    live = replace(live, available_replicas=replicas, live={**live.live, "replicas": replicas})
    observed = with_base(
        artifacts=built(spec),
        deployment=live,
        service=service_state(first),
        autoscaler=seen_autoscaler(child(first, kind)),
        keda_served=keda,
        **seen,
    )
    return plan(spec, observed, previous=first.wire_status)


def test_what_the_autoscaler_decided_is_not_drift_and_is_reported() -> None:
    result = served(autoscaled(), replicas=3)
    assert [o["kind"] for o in result.apply] == []
    assert [o["kind"] for o in result.create] == ["NetworkPolicy"]
    assert conditions(result.wire_status)["Serving"] == ("True", "Available")
    assert result.wire_status["serving"]["replicas"] == 3
    serving = next(c for c in result.wire_status["conditions"] if c["type"] == "Serving")
    assert "HorizontalPodAutoscaler scales 1-4" in serving["message"]


def rolled_out_with(
    first: Plan, spec: CompressedModelSpec, autoscaler: AutoscalerState, **seen: Any
) -> Observed:
    """`first`'s Deployment and Service rolled out, beside `autoscaler`, for `spec`."""
    return with_base(
        artifacts=built(spec),
        deployment=rolled_out(first),
        service=service_state(first),
        autoscaler=autoscaler,
        **seen,
    )


def test_an_autoscaler_that_cannot_scale_is_said_in_the_message() -> None:
    spec = autoscaled()
    first = first_plan(spec)
    broken = seen_autoscaler(
        child(first, "HorizontalPodAutoscaler"),
        problem="unable to get external metric ml/vllm_num_requests_waiting",
    )
    observed = rolled_out_with(first, spec, broken)
    result = plan(spec, observed, previous=first.wire_status)
    serving = next(c for c in result.wire_status["conditions"] if c["type"] == "Serving")
    assert "the autoscaler does not scale: unable to get external metric" in serving["message"]


def test_an_edited_autoscaler_is_put_back() -> None:
    spec = autoscaled()
    first = first_plan(spec)
    edited = seen_autoscaler(child(first, "HorizontalPodAutoscaler"), spec_hash="edited")
    observed = rolled_out_with(first, spec, edited)
    result = plan(spec, observed, previous=first.wire_status)
    assert [o["kind"] for o in result.apply] == ["HorizontalPodAutoscaler"]


def test_turning_autoscaling_off_removes_the_autoscaler_and_restores_the_count() -> None:
    spec = autoscaled()
    first = first_plan(spec)
    fixed = make_spec(serving=spec_dict()["serving"] | {"replicas": 2})
    observed = rolled_out_with(
        first, fixed, seen_autoscaler(child(first, "HorizontalPodAutoscaler"))
    )
    result = plan(fixed, observed, previous=first.wire_status)
    assert ("HorizontalPodAutoscaler", "tiny-vllm") in result.delete
    deployment = child(result, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert names.ANNOTATION_AUTOSCALER not in deployment["metadata"]["annotations"]


def test_keda_appearing_replaces_the_hpa_with_a_scaled_object() -> None:
    spec = autoscaled()
    first = first_plan(spec)
    observed = rolled_out_with(
        first, spec, seen_autoscaler(child(first, "HorizontalPodAutoscaler")), keda_served=True
    )
    result = plan(spec, observed, previous=first.wire_status)
    assert ("HorizontalPodAutoscaler", "tiny-vllm") in result.delete
    assert child(result, "ScaledObject")


def test_someone_elses_autoscaler_is_never_deleted() -> None:
    spec = make_spec()
    first = first_plan(autoscaled())
    foreign = replace(
        seen_autoscaler(child(first, "HorizontalPodAutoscaler")), owner_uid="someone-else"
    )
    observed = rolled_out_with(first, spec, foreign)
    assert plan(spec, observed).delete == []


def test_serving_none_removes_the_autoscaler_too() -> None:
    spec = autoscaled()
    first = first_plan(spec)
    off = make_spec(serving=spec_dict()["serving"] | {"variant": "none"})
    observed = rolled_out_with(first, off, seen_autoscaler(child(first, "HorizontalPodAutoscaler")))
    assert ("HorizontalPodAutoscaler", "tiny-vllm") in plan(off, observed).delete


def test_a_cluster_without_the_api_is_told_once_and_changes_nothing() -> None:
    config = OperatorConfig.model_validate({"autoscaling": {"engine": "keda"}})
    spec = autoscaled()
    observed = with_base(artifacts=built(spec), missing_kinds=frozenset({"ScaledObject"}))
    result = plan(spec, observed, config=config)
    assert conditions(result.wire_status)["Serving"] == ("False", "AutoscalerUnavailable")
    assert result.wire_status["summary"]["phase"] == "Failed"
    assert not [o for o in result.create if o["kind"] in ("Deployment", "ScaledObject")]


# --- the cold start -------------------------------------------------------------------------

POD = {
    "metadata": {
        "name": "tiny-vllm-abc",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "labels": {names.LABEL_KEY: "k1"},
    },
    "status": {
        "initContainerStatuses": [
            {
                "name": "pull",
                "state": {
                    "terminated": {
                        "startedAt": "2026-01-01T00:00:05Z",
                        "finishedAt": "2026-01-01T00:00:47Z",
                    }
                },
            }
        ],
        "containerStatuses": [
            {"name": "vllm", "state": {"running": {"startedAt": "2026-01-01T00:00:48Z"}}}
        ],
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:02:03Z"}
        ],
    },
}


def test_the_cold_start_is_measured_on_the_newest_ready_pod_of_the_served_artifact() -> None:
    older = PodTiming.from_object(POD)
    pending = replace(older, name="pending", ready_at=None)
    other_artifact = replace(older, name="old", key="k0", ready_at="2026-01-01T09:00:00Z")
    measured = cold_start([other_artifact, pending, older], "k1")
    assert measured == ColdStart(
        seconds=123.0,
        pull_seconds=42.0,
        load_seconds=75.0,
        pod="tiny-vllm-abc",
        measured_at="2026-01-01T00:02:03Z",
    )
    assert cold_start([pending], "k1") is None


def test_the_cold_start_reaches_status_and_stays_while_scaled_to_zero() -> None:
    spec = autoscaled(minReplicas=0, wakeQuery="vector(1)")
    first = first_plan(spec, keda=True)
    key = child(first, "Deployment")["spec"]["template"]["metadata"]["labels"][names.LABEL_KEY]
    pod = replace(PodTiming.from_object(POD), key=key)
    running = served(spec, keda=True, replicas=1, serving_pods=(pod,))
    measured = running.wire_status["serving"]["autoscaling"]["coldStart"]
    assert measured["seconds"] == 123.0 and measured["pullSeconds"] == 42.0
    serving = next(c for c in running.wire_status["conditions"] if c["type"] == "Serving")
    assert "a cold start took 123 s" in serving["message"]

    # Scaled to zero: no pod to measure, the last measurement stays, Ready stays True.
    live = replace(
        rolled_out(first, replicas=0, ready_replicas=0, updated_replicas=0, available_replicas=0),
        live=None,
    )
    observed = with_base(
        artifacts=built(spec),
        deployment=live,
        service=service_state(first),
        autoscaler=seen_autoscaler(child(first, "ScaledObject")),
        keda_served=True,
    )
    idle = plan(spec, observed, previous=running.wire_status)
    assert idle.wire_status["serving"]["autoscaling"]["coldStart"] == measured
    assert conditions(idle.wire_status)["Ready"] == ("True", "Ready")
    serving = next(c for c in idle.wire_status["conditions"] if c["type"] == "Serving")
    assert "scaled to zero" in serving["message"] and "cold start took 123 s" in serving["message"]


def test_statuses_with_autoscaling_round_trip() -> None:
    status = ServingStatus(
        autoscaling=AutoscalingStatus(kind="ScaledObject", cold_start=ColdStart(seconds=1.5))
    )
    assert ServingStatus.model_validate(status.to_wire()) == status


@pytest.mark.parametrize(
    ("autoscaling", "message"),
    [
        ({"minReplicas": 5, "maxReplicas": 2}, "minReplicas (5) must not exceed maxReplicas (2)"),
        ({"minReplicas": 0, "maxReplicas": 2}, "minReplicas 0 needs wakeQuery"),
        ({"maxReplicas": 2, "metric": "kvCacheUsage", "target": 80}, "is not a fraction"),
    ],
)
def test_inconsistent_autoscaling_is_refused_with_what_to_change(autoscaling, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_spec(serving={"autoscaling": autoscaling})


def test_the_scaled_object_check_catches_a_misspelt_field_and_a_wrong_type() -> None:
    """Guards validate_scaled_object: KEDA's schema must refuse what KEDA would."""
    scaled = child(first_plan(autoscaled(), keda=True), "ScaledObject")
    misspelt = {**scaled, "spec": {**scaled["spec"], "minReplicaCont": 1}}
    with pytest.raises(AssertionError):
        validate_scaled_object(misspelt)
    trigger = scaled["spec"]["triggers"][0]
    numeric = {**trigger, "metadata": {**trigger["metadata"], "threshold": 4}}
    wrong_type = {**scaled, "spec": {**scaled["spec"], "triggers": [numeric]}}
    with pytest.raises(ValueError, match="string"):
        validate_scaled_object(wrong_type)
