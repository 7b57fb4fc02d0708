"""What serves: the chosen variant's Deployment and Service, and the Serving condition.

Whatever serves keeps serving until something better is decided: a variant still
being built, failing its gate or not fitting never takes the old one down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelpress.api.reasons import ConditionType, Reason
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import AutoscalingStatus, ColdStart, Condition, ServingStatus
from modelpress.config import OperatorConfig
from modelpress.plan import names, serving
from modelpress.plan.autoscaling import (
    SCALED_OBJECT,
    Bounds,
    autoscaler,
    autoscaler_kind,
    cold_start,
    replica_bounds,
)
from modelpress.plan.conditions import condition
from modelpress.plan.drift import drifted
from modelpress.plan.fit import unknown_serving_gpu
from modelpress.plan.multinode import LWS_API_VERSION, LWS_KIND, leader_worker_set
from modelpress.plan.observed import AutoscalerState, DeploymentState, Observed, Owner
from modelpress.plan.outcome import VariantPlan
from modelpress.plan.progress import Verdict
from modelpress.plan.recipes import Choice, artifact_uri, choose_variant
from modelpress.plan.trust import image_problem
from modelpress.plan.variants import candidate


@dataclass(frozen=True)
class ServingPlan:
    condition: Condition
    status: ServingStatus | None = None
    create: list[dict[str, Any]] = field(default_factory=list)
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)


def _choice(
    spec: CompressedModelSpec, outcomes: Sequence[VariantPlan], config: OperatorConfig
) -> Choice:
    unknown = unknown_serving_gpu(spec, config)
    if unknown and spec.serving.variant != "none":
        return Choice(None, True, Reason.UNKNOWN_GPU_PRODUCT, unknown)
    return choose_variant(spec, [candidate(o) for o in outcomes])


def plan_serving(
    owner: Owner,
    spec: CompressedModelSpec,
    observed: Observed,
    outcomes: Sequence[VariantPlan],
    config: OperatorConfig,
    previous: ServingStatus | None = None,
) -> ServingPlan:
    current = observed.deployment
    if current is not None and owner.uid is not None and current.owner_uid != owner.uid:
        current = None  # not this model's (a leftover, or someone else's): never adopted
    refused = image_problem("spec.serving.image", spec.serving.image, config.trust)
    if refused is None and observed.serving_blocker is not None:
        refused = Verdict(observed.serving_blocker.reason, observed.serving_blocker.message)
    if refused is not None and spec.serving.variant != "none":
        return ServingPlan(_serving(owner, False, refused.reason, refused.message))
    choice = _choice(spec, outcomes, config)

    def serving_condition(status: bool, reason: Reason, message: str) -> Condition:
        return _serving(owner, status, reason, message)

    if choice.variant is not None:
        chosen = next(o for o in outcomes if o.name == choice.variant)
        return _roll_out(owner, spec, observed, current, chosen, choice, config, previous)

    if choice.decided and choice.reason is Reason.SERVING_DISABLED:
        delete = []
        if current is not None:
            delete.append(("Deployment", current.name))
        if observed.service is not None:
            delete.append(("Service", observed.service.name))
        delete += _obsolete_autoscaler(owner, observed, wanted=None)
        lws = _owned_workload(owner, observed.leader_worker_set)
        if lws is not None:
            delete.append((LWS_KIND, lws.name))
        return ServingPlan(serving_condition(False, choice.reason, choice.message), delete=delete)

    # Nothing new to serve: whatever serves keeps serving.
    across = _owned_workload(owner, observed.leader_worker_set)
    current = current or across
    if current is None:
        return ServingPlan(serving_condition(False, choice.reason, choice.message))
    endpoint = serving.endpoint(owner.name, owner.namespace)
    status = ServingStatus(
        variant=current.variant,
        deployment=current.name,
        artifact_uri=artifact_uri(spec, current.key) if current.key else None,
        endpoint=endpoint,
        gpus=current.gpus,
        strategy=_strategy(current.strategy),
        replicas=current.replicas,
        ready_replicas=current.ready_replicas,
        nodes=previous.nodes if previous and current is across else None,
        autoscaling=previous.autoscaling if previous and current.autoscaler else None,
    )
    if choice.decided:
        message = f"{choice.message}; {current.variant} keeps serving"
        return ServingPlan(serving_condition(False, choice.reason, message), status)
    if current.rolled_out:
        message = f"{current.variant} serves at {endpoint}; {choice.message}"
        return ServingPlan(serving_condition(True, Reason.AVAILABLE, message), status)
    message = f"{current.variant} is rolling out; {choice.message}"
    return ServingPlan(serving_condition(False, Reason.ROLLING_OUT, message), status)


def _serving(owner: Owner, status: bool, reason: Reason, message: str) -> Condition:
    return condition(ConditionType.SERVING, status, reason, message, owner.generation)


def _strategy(value: str | None) -> Any:
    """A Deployment's strategy as the status allows it (another value is left out)."""
    return value if value in ("RollingUpdate", "Recreate") else None


def _owned_workload(owner: Owner, found: DeploymentState | None) -> DeploymentState | None:
    if found is None or (owner.uid is not None and found.owner_uid != owner.uid):
        return None  # not this model's: never adopted, never deleted
    return found


def _owned_autoscaler(owner: Owner, observed: Observed) -> AutoscalerState | None:
    found = observed.autoscaler
    if found is None or (owner.uid is not None and found.owner_uid != owner.uid):
        return None  # not this model's: never adopted, never deleted
    return found


def _obsolete_autoscaler(
    owner: Owner, observed: Observed, wanted: str | None
) -> list[tuple[str, str]]:
    """The model's autoscaler when it is not (or no longer) the kind wanted."""
    found = _owned_autoscaler(owner, observed)
    if found is None or found.kind == wanted:
        return []
    return [(found.kind, found.name)]


@dataclass(frozen=True)
class _Scaling:
    """The autoscaler part of a rollout."""

    object: dict[str, Any]
    bounds: Bounds
    status: AutoscalingStatus
    problem: str | None


def _scaling(
    owner: Owner,
    spec: CompressedModelSpec,
    observed: Observed,
    chosen: VariantPlan,
    gpus: int,
    config: OperatorConfig,
    previous: ServingStatus | None,
    nodes: int = 1,
) -> _Scaling | Verdict:
    """The autoscaler the chosen variant's Deployment gets, or why it cannot have one."""
    wanted = spec.serving.autoscaling
    kind = autoscaler_kind(wanted, config, observed.keda_served)
    assert wanted is not None and kind is not None
    product = spec.serving.gpu.product if spec.serving.gpu else None
    bounds = replica_bounds(wanted, kind, gpus, product, config)
    if isinstance(bounds, Verdict):
        return bounds
    target = (LWS_API_VERSION, LWS_KIND) if nodes > 1 else ("apps/v1", "Deployment")
    desired = autoscaler(owner.name, owner.namespace, wanted, kind, bounds, gpus, config, target)
    if desired["kind"] in observed.missing_kinds:
        return Verdict(
            Reason.AUTOSCALER_UNAVAILABLE,
            f"the cluster does not serve {desired['apiVersion']} {desired['kind']}: install "
            "KEDA, or set the chart's autoscaling.engine to hpa or auto"
            if desired["kind"] == SCALED_OBJECT
            else f"the cluster does not serve {desired['apiVersion']} {desired['kind']}",
        )
    measured = cold_start(observed.serving_pods, chosen.key)
    if measured is None and previous is not None and previous.autoscaling is not None:
        measured = previous.autoscaling.cold_start
    found = _owned_autoscaler(owner, observed)
    status = AutoscalingStatus(
        kind=desired["kind"],
        name=desired["metadata"]["name"],
        min_replicas=bounds.min_replicas,
        max_replicas=bounds.max_replicas,
        cold_start=measured,
    )
    problem = found.problem if found is not None and found.kind == desired["kind"] else None
    return _Scaling(desired, bounds, status, problem)


def _roll_out(
    owner: Owner,
    spec: CompressedModelSpec,
    observed: Observed,
    current: DeploymentState | None,
    chosen: VariantPlan,
    choice: Choice,
    config: OperatorConfig,
    previous: ServingStatus | None,
) -> ServingPlan:
    assert chosen.artifact is not None and chosen.fit is not None and chosen.fit.sizing
    assert chosen.key is not None and chosen.uri is not None
    sizing = chosen.fit.sizing
    scaling: _Scaling | None = None
    if spec.serving.autoscaling is not None:
        planned = _scaling(
            owner, spec, observed, chosen, sizing.gpus, config, previous, sizing.nodes
        )
        if isinstance(planned, Verdict):  # whatever serves keeps serving
            return ServingPlan(_serving(owner, False, planned.reason, planned.message))
        scaling = planned
    across_nodes = sizing.nodes > 1
    if across_nodes and LWS_KIND in observed.missing_kinds:
        message = (
            f"{chosen.name} needs {sizing.nodes} nodes of {sizing.tensor_parallel_size}x "
            f"{sizing.gpu} and the cluster does not serve {LWS_API_VERSION} {LWS_KIND}: "
            "install LeaderWorkerSet (lws.sigs.k8s.io), or lower spec.serving.maxNodes to "
            "serve within one node"
        )
        return ServingPlan(_serving(owner, False, Reason.MULTI_NODE_UNAVAILABLE, message))
    served = serving.Served(
        owner.name, owner.namespace, spec, chosen.name, chosen.key, chosen.uri,
        chosen.artifact.total_bytes, sizing, config,
    )  # fmt: skip
    kind = autoscaler_kind(spec.serving.autoscaling, config, observed.keda_served)
    if across_nodes:
        desired = leader_worker_set(served, kind)
        current, other = _owned_workload(owner, observed.leader_worker_set), current
    else:
        desired = serving.deployment(
            owner.name, owner.namespace, spec, chosen.name, chosen.key, chosen.uri,
            chosen.artifact.total_bytes, sizing, config, kind,
        )  # fmt: skip
        other = _owned_workload(owner, observed.leader_worker_set)
    svc = serving.service(owner.name, owner.namespace, leaders_only=across_nodes)
    wanted = [desired, svc] + ([scaling.object] if scaling else [])
    children = [(obj["kind"], obj["metadata"]["name"]) for obj in wanted] + [
        ("NetworkPolicy", names.serving_policy_name(owner.name))
    ]
    taken = [
        f"{kind} {owner.namespace}/{name}"
        for kind, name in children
        if (kind, name) in observed.name_conflicts
    ]
    if taken:
        message = (
            f"{' and '.join(taken)} already exist(s) and was not created by modelpress for this "
            "CompressedModel; it is left alone: delete or rename it, or give the "
            "CompressedModel another name"
        )
        return ServingPlan(_serving(owner, False, Reason.NAME_CONFLICT, message))
    create, apply = [], []
    up_to_date = (
        current is not None
        and current.spec_hash == names.spec_hash(desired)
        and not drifted(desired, current.live)
    )
    if current is None:
        create.append(desired)
    elif not up_to_date:
        apply.append(desired)
    if observed.service is None:
        create.append(svc)
    elif observed.service.spec_hash != names.spec_hash(svc):
        apply.append(svc)
    delete = _obsolete_autoscaler(owner, observed, scaling.object["kind"] if scaling else None)
    switched = up_to_date and current is not None and current.rolled_out
    nodes = sizing.nodes
    if other is not None and (switched or sizing.gpus > 0):
        # The other workload kind serves until this one is up; on GPUs it goes first, as
        # with Recreate: its GPUs may be the ones the new workload is waiting for.
        delete.append(("Deployment" if across_nodes else LWS_KIND, other.name))
    elif other is not None and not across_nodes and previous is not None:
        nodes = previous.nodes or nodes  # the LWS still serves: keep looking it up
    if scaling is not None:
        seen = _owned_autoscaler(owner, observed)
        if seen is None or seen.kind != scaling.object["kind"]:
            create.append(scaling.object)
        elif seen.spec_hash != names.spec_hash(scaling.object):
            apply.append(scaling.object)
    endpoint = serving.endpoint(owner.name, owner.namespace)
    # A LeaderWorkerSet rolls groups one at a time without surge, as RollingUpdate does.
    strategy = desired["spec"].get("strategy", {}).get("type", "RollingUpdate")
    if scaling is not None:  # the autoscaler decides; the live count says what it decided
        replicas = current.replicas if current else max(scaling.bounds.min_replicas, 1)
    else:
        replicas = spec.serving.replicas
    ready = current.ready_replicas if current else 0
    status = ServingStatus(
        variant=chosen.name,
        deployment=desired["metadata"]["name"],
        artifact_uri=chosen.uri,
        endpoint=endpoint,
        gpus=sizing.gpus,
        strategy=strategy,
        replicas=replicas,
        ready_replicas=ready,
        nodes=nodes,
        autoscaling=scaling.status if scaling else None,
    )
    if up_to_date and current is not None and current.rolled_out:
        message = f"{chosen.name} serves at {endpoint} ({ready}/{replicas} replicas ready, "
        message += f"{strategy}{_scaling_note(scaling)})"
        if scaling is not None and replicas == 0:
            message = f"{chosen.name} is scaled to zero at {endpoint}: the next request wakes it"
            message += _cold_start_note(scaling.status.cold_start)
        verdict = _serving(owner, True, Reason.AVAILABLE, message)
    elif up_to_date and current is not None and current.stalled_message:
        message = f"the rollout of {chosen.name} stalled: {current.stalled_message}"
        verdict = _serving(owner, False, Reason.ROLLOUT_STALLED, message)
    else:
        message = (
            f"rolling out {chosen.name} ({strategy}): {ready}/{replicas} replicas ready; "
            f"{choice.message}"
        )
        verdict = _serving(owner, False, Reason.ROLLING_OUT, message)
    return ServingPlan(verdict, status, create, apply, delete)


def _scaling_note(scaling: _Scaling | None) -> str:
    if scaling is None:
        return ""
    bounds, status = scaling.bounds, scaling.status
    note = f"; {status.kind} scales {bounds.min_replicas}-{bounds.max_replicas}"
    if bounds.capped:
        note += f" ({bounds.capped})"
    note += _cold_start_note(status.cold_start)
    if scaling.problem:
        note += f"; the autoscaler does not scale: {scaling.problem}"
    return note


def _cold_start_note(measured: ColdStart | None) -> str:
    if measured is None or measured.seconds is None:
        return ""
    return f"; a cold start took {measured.seconds:g} s"
