"""Autoscaling: the KEDA ScaledObject or HorizontalPodAutoscaler that scales the serving
Deployment on vLLM's own signals, and what a cold start costs.

Both autoscalers get the same arithmetic: the signal is summed over the replicas and
divided by the per-replica target (`AverageValue`), so 9 queued requests with a target
of 4 ask for 3 replicas, and a KV cache 90 % used on each of 2 replicas with a target
of 0.8 asks for 3. GPU-aware: the ceiling is what the platform's GPUs of the product can
hold (`gpuCatalog.<product>.available`), and replicas are added one at a time, so a
scale-up never asks for several GPU pods that cannot all be placed, and never takes
the GPU a rolling update (maxSurge 0) is waiting for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelpress.api.reasons import Reason
from modelpress.api.spec import Autoscaling
from modelpress.api.status import ColdStart
from modelpress.config import OperatorConfig
from modelpress.plan import names
from modelpress.plan.observed import PodTiming
from modelpress.plan.progress import Verdict

SCALED_OBJECT = "ScaledObject"
HPA = "HorizontalPodAutoscaler"
KEDA_API_VERSION = "keda.sh/v1alpha1"
HPA_API_VERSION = "autoscaling/v2"

#: The vLLM series each spec signal reads (their names in vLLM 0.32's /metrics).
VLLM_SERIES = {
    "waitingRequests": "vllm:num_requests_waiting",
    "kvCacheUsage": "vllm:kv_cache_usage_perc",
}
#: A scale-up adds at most this many replicas per period on GPUs (more on CPU).
GPU_STEP = 1
CPU_STEP = 4
STEP_SECONDS = 60


def engine(config: OperatorConfig, keda_served: bool) -> str:
    """keda or hpa: the configured engine, or with `auto`, keda where the cluster has it."""
    chosen = config.autoscaling.engine
    if chosen == "auto":
        return "keda" if keda_served else "hpa"
    return chosen


def autoscaler_kind(
    autoscaling: Autoscaling | None, config: OperatorConfig, keda_served: bool
) -> str | None:
    """The kind of autoscaler a model's Deployment gets, or None for a fixed count."""
    if autoscaling is None:
        return None
    return SCALED_OBJECT if engine(config, keda_served) == "keda" else HPA


@dataclass(frozen=True)
class Bounds:
    """The replica range the autoscaler gets, and why it is narrower than asked."""

    min_replicas: int
    max_replicas: int
    capped: str | None = None


def replica_bounds(
    autoscaling: Autoscaling, kind: str, gpus: int, product: str | None, config: OperatorConfig
) -> Bounds | Verdict:
    """The range within what the platform can schedule, or why even the minimum cannot be."""
    low, high = autoscaling.min_replicas, autoscaling.max_replicas
    if low == 0 and kind != SCALED_OBJECT:
        return Verdict(
            Reason.SCALE_TO_ZERO_UNAVAILABLE,
            "minReplicas 0 needs KEDA, and this cluster scales with a HorizontalPodAutoscaler "
            f"(autoscaling.engine {config.autoscaling.engine}): set "
            "spec.serving.autoscaling.minReplicas to 1 or more, or install KEDA",
        )
    available = config.gpus_available(product) if gpus and product else None
    if available is None:
        return Bounds(low, high)
    fit = available // gpus
    if fit < max(low, 1):
        return Verdict(
            Reason.REPLICAS_DO_NOT_FIT,
            f"minReplicas {max(low, 1)} needs {max(low, 1) * gpus} {product} GPUs; the platform "
            f"has {available} for serving (gpuCatalog.{product}.available): lower "
            "spec.serving.autoscaling.minReplicas or serve a smaller variant",
        )
    if high > fit:
        capped = (
            f"maxReplicas {high} capped at {fit}: {available} {product} GPUs hold {fit} "
            f"replicas of {gpus}"
        )
        return Bounds(low, fit, capped)
    return Bounds(low, high)


def behavior(gpus: int, config: OperatorConfig) -> dict[str, Any]:
    """HPA scaling behaviour: small scale-up steps on GPUs, slow scale-down everywhere
    (each replica gone is a cold start when load returns)."""
    step = GPU_STEP if gpus else CPU_STEP
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Min" if gpus else "Max",
            "policies": [{"type": "Pods", "value": step, "periodSeconds": STEP_SECONDS}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": config.autoscaling.scale_down_seconds,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": STEP_SECONDS}],
        },
    }


def _quantity(value: float) -> str:
    """A Kubernetes quantity for a target: 4 -> "4", 0.8 -> "800m"."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def _threshold(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def signal_query(model: str, namespace: str, metric: str) -> str:
    """PromQL for the signal summed over the model's replicas; 0 when none runs."""
    selector = f"namespace={json.dumps(namespace)},model_name={json.dumps(model)}"
    return f"sum({VLLM_SERIES[metric]}{{{selector}}}) or vector(0)"


def wake_query(query: str) -> str:
    """1 while the user's wake query is above 0, else 0: it wakes the model and asks for
    one replica, never more (vLLM's own signal takes over from there)."""
    return f"max(({query}) > bool 0) or vector(0)"


def _metadata(model: str, namespace: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": names.deployment_name(model),
        "namespace": namespace,
        "labels": names.labels(model, names.SERVING),
        "annotations": {names.ANNOTATION_SPEC_HASH: names.short_hash([kind, spec])},
    }


def autoscaler(
    model: str,
    namespace: str,
    autoscaling: Autoscaling,
    kind: str,
    bounds: Bounds,
    gpus: int,
    config: OperatorConfig,
    workload: tuple[str, str] = ("apps/v1", "Deployment"),
) -> dict[str, Any]:
    """The ScaledObject (engine keda) or HPA (engine hpa) for the model's workload
    (`workload`: its apiVersion and kind; a LeaderWorkerSet scales by groups)."""
    api_version, kind_of_workload = workload
    target_ref = {
        "apiVersion": api_version,
        "kind": kind_of_workload,
        "name": names.deployment_name(model),
    }
    target = autoscaling.effective_target
    if kind == SCALED_OBJECT:
        triggers: list[dict[str, Any]] = [
            {
                "type": "prometheus",
                "name": "vllm",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": config.autoscaling.prometheus_address,
                    "query": signal_query(model, namespace, autoscaling.metric),
                    "threshold": _threshold(target),
                },
            }
        ]
        if autoscaling.wake_query is not None:
            triggers.append(
                {
                    "type": "prometheus",
                    "name": "wake",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": config.autoscaling.prometheus_address,
                        "query": wake_query(autoscaling.wake_query),
                        "threshold": "1",
                        "activationThreshold": "0",
                    },
                }
            )
        spec: dict[str, Any] = {
            "scaleTargetRef": target_ref,
            "minReplicaCount": bounds.min_replicas,
            "maxReplicaCount": bounds.max_replicas,
            "pollingInterval": config.autoscaling.polling_seconds,
            "cooldownPeriod": config.autoscaling.scale_down_seconds,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(gpus, config)}},
            "triggers": triggers,
        }
        return {
            "apiVersion": KEDA_API_VERSION,
            "kind": SCALED_OBJECT,
            "metadata": _metadata(model, namespace, SCALED_OBJECT, spec),
            "spec": spec,
        }
    names_by_metric = {
        "waitingRequests": config.autoscaling.external_metrics.waiting_requests,
        "kvCacheUsage": config.autoscaling.external_metrics.kv_cache_usage,
    }
    external = {
        "metric": {
            "name": names_by_metric[autoscaling.metric],
            "selector": {"matchLabels": {"model_name": model}},
        },
        "target": {"type": "AverageValue", "averageValue": _quantity(target)},
    }
    spec = {
        "scaleTargetRef": target_ref,
        "minReplicas": max(bounds.min_replicas, 1),
        "maxReplicas": bounds.max_replicas,
        "metrics": [{"type": "External", "external": external}],
        "behavior": behavior(gpus, config),
    }
    return {
        "apiVersion": HPA_API_VERSION,
        "kind": HPA,
        "metadata": _metadata(model, namespace, HPA, spec),
        "spec": spec,
    }


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        began = datetime.fromisoformat(start.replace("Z", "+00:00"))
        ended = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    elapsed = (ended - began).total_seconds()
    return elapsed if elapsed >= 0 else None


def cold_start(pods: Sequence[PodTiming], key: str | None) -> ColdStart | None:
    """What the newest ready replica of the artifact `key` took from its pod's creation to
    answering: the artifact pull (init container) and vLLM's load (server start to ready)."""
    ready = [p for p in pods if p.ready_at and p.key == key]
    if not ready:
        return None
    newest = max(ready, key=lambda p: p.ready_at or "")
    total = _seconds(newest.created, newest.ready_at)
    if total is None:
        return None
    return ColdStart(
        seconds=round(total, 1),
        pull_seconds=_rounded(_seconds(newest.pull_started, newest.pull_finished)),
        load_seconds=_rounded(_seconds(newest.server_started, newest.ready_at)),
        pod=newest.name,
        measured_at=newest.ready_at,
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
