"""One reconcile: read the world, ask the planner, apply its answer, report.

Called from the create/update/resume handlers and from each model's resync
loop; a per-model lock keeps two of them from interleaving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from modelpress.api.reasons import Reason
from modelpress.api.resource import API_VERSION, KIND, read_spec
from modelpress.api.spec import CompressedModelSpec
from modelpress.handlers import observe
from modelpress.handlers.deadline import StoreTimeout
from modelpress.handlers.kube import ApiError
from modelpress.handlers.metrics import ModelFacts
from modelpress.handlers.state import OperatorState, WrittenStatus
from modelpress.plan.autoscaling import HPA, SCALED_OBJECT, autoscaler_kind
from modelpress.plan.conditions import merge_patch, now_rfc3339
from modelpress.plan.jobset import JOBSET_KIND, jobset_state, pod_selector
from modelpress.plan.multinode import LWS_KIND
from modelpress.plan.names import (
    ANNOTATION_RETRY,
    GANG,
    LABEL_COMPONENT,
    LABEL_MODEL,
    SERVING,
    deployment_name,
)
from modelpress.plan.observed import (
    AutoscalerState,
    Blocker,
    DeploymentState,
    JobState,
    Observed,
    Owner,
    PodTiming,
    ServiceState,
    leader_worker_set_state,
    owner_uid,
)
from modelpress.plan.recipes import variant_locations
from modelpress.plan.reconcile import Plan, plan_invalid, plan_model
from modelpress.plan.trust import endpoint_blocker, store_blocker
from modelpress.storeview import RecordError

log = logging.getLogger("modelpress.operator")
#: Kinds from APIs a cluster may lack; their absence is reported, not retried in a loop.
OPTIONAL_KINDS = (SCALED_OBJECT, HPA, LWS_KIND, JOBSET_KIND)


def owner_reference_view(body: Mapping[str, Any]) -> dict[str, Any]:
    """The owner as `kopf.adopt` should see it: identity only. Without its labels,
    children do not inherit them, so GitOps tools that track resources by label
    (e.g. Argo CD's instance label) never claim, diff or prune them."""
    metadata = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", API_VERSION),
        "kind": body.get("kind", KIND),
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata.get("namespace"),
            "uid": metadata.get("uid"),
        },
    }


@dataclass(frozen=True)
class Children:
    """kopf's indexes of the children, keyed by (namespace, model name)."""

    jobs: Mapping[tuple[str, ...], Iterable[Any]]
    """Jobs by (namespace, model); the names of JobSets with Jobs by (..., JOBSET_KIND)."""
    deployments: Mapping[tuple[str, str], Iterable[DeploymentState]]
    services: Mapping[tuple[str, ...], Iterable[ServiceState]]
    """The endpoint by (namespace, model); headless gang Services by (namespace, model, GANG)."""
    policies: Mapping[tuple[str, str], Iterable[ServiceState]]


def _owned(obj: Mapping[str, Any], owner: Owner) -> bool:
    return owner_uid(obj.get("metadata") or {}) == owner.uid


async def _name_conflicts(state: OperatorState, owner: Owner) -> frozenset[tuple[str, str]]:
    """Conflicts found earlier that still stand (the object is still there, still not ours)."""
    recorded = state.conflicts.get(owner.uid or "")
    if not recorded:
        return frozenset()
    for kind, name in list(recorded):
        existing = await state.api().get(kind, owner.namespace, name)
        if existing is None or _owned(existing, owner):
            recorded.discard((kind, name))
    return frozenset(recorded)


async def observe_model(
    state: OperatorState,
    owner: Owner,
    spec: CompressedModelSpec,
    children: Children,
    served_nodes: int = 1,
) -> Observed:
    """What the planner needs; `served_nodes`: nodes of what serves now (from the status),
    so a LeaderWorkerSet is looked up only where one may be."""
    client = state.api()
    key = (owner.namespace, owner.name)
    job_list = tuple(
        j
        for j in children.jobs.get(key, ())
        if owner.uid is None or j.owner_uid in (None, owner.uid)
    )
    # JobSets are read where one may be: the spec spreads, or a JobSet's Job is there
    # (one started before `nodes` was lowered still runs, and is followed to its end)
    spreads = spec.compression.nodes > 1 or any(children.jobs.get((*key, JOBSET_KIND), ()))
    if spreads and JOBSET_KIND not in state.kinds_missing():
        job_list += await _job_sets(state, owner)
    deployment = next(iter(children.deployments.get(key, ())), None)
    service = next(iter(children.services.get(key, ())), None)
    gang_services = frozenset(
        s.name
        for s in children.services.get((*key, GANG), ())
        if owner.uid is None or s.owner_uid in (None, owner.uid)
    )
    messages = await _pod_messages(state, owner.namespace, job_list)
    missing = state.kinds_missing()
    lws = None
    if (spec.serving.max_nodes > 1 or served_nodes > 1) and LWS_KIND not in missing:
        found = await client.get(LWS_KIND, owner.namespace, deployment_name(owner.name))
        lws = leader_worker_set_state(found) if found is not None else None
    keda = spec.serving.autoscaling is not None and await state.keda_served()
    autoscaler, pods = await _scaling(state, owner, spec, deployment or lws, keda, missing)
    base = Observed(
        jobs=job_list,
        deployment=deployment,
        service=service,
        gang_services=gang_services,
        job_messages=messages,
        network_policies={p.name: p for p in children.policies.get(key, ())},
        name_conflicts=await _name_conflicts(state, owner),
        serving_blocker=await observe.api_key_blocker(client, spec, owner.namespace),
        autoscaler=autoscaler,
        leader_worker_set=lws,
        missing_kinds=missing,
        keda_served=keda,
        serving_pods=pods,
    )
    trust = state.config.trust
    credentials, blocker = await observe.storage_credentials(client, spec, owner.namespace)
    blocker = blocker or store_blocker(spec, owner.namespace, trust)
    if blocker is None and credentials is not None and spec.storage.secret_ref is not None:
        blocker = endpoint_blocker(spec.storage.secret_ref.name, credentials.endpoint_url, trust)
    if blocker is not None:
        return _replace(base, store_blocker=blocker)
    from modelpress.storage import StorageError

    extra = [deployment.key] if deployment is not None and deployment.key else []
    endpoint = (credentials.endpoint_url if credentials else None) or "AWS S3"
    try:
        view = await state.guard.read(
            endpoint,
            state.store.view,
            spec,
            credentials,
            lambda record: variant_locations(spec, record, state.config),
            extra,
        )
    except StoreTimeout as error:
        return _replace(base, store_blocker=Blocker(Reason.STORE_UNAVAILABLE, str(error)))
    except RecordError as error:
        return _replace(base, store_blocker=Blocker(Reason.UNTRUSTED_RECORD, str(error)))
    except StorageError as error:
        return _replace(base, store_blocker=Blocker(Reason.STORE_UNAVAILABLE, str(error)))
    source_blocker = None
    if view.base is None:
        source_blocker = await observe.hf_token_blocker(client, spec, owner.namespace)
    return _replace(
        base,
        source=view.source,
        base=view.base,
        artifacts=view.artifacts,
        corrupt_artifacts=view.corrupt,
        source_blocker=source_blocker,
    )


async def _job_sets(state: OperatorState, owner: Owner) -> tuple[JobState, ...]:
    """The model's JobSets (distillations over nodes), read as Jobs."""
    try:
        found = await state.api().list(JOBSET_KIND, owner.namespace, {LABEL_MODEL: owner.name})
    except ApiError as error:
        if error.status != 404:
            raise
        state.kind_missing(JOBSET_KIND)  # no JobSet here: indexed Jobs instead
        return ()
    states = (jobset_state(obj) for obj in found)
    return tuple(j for j in states if owner.uid is None or j.owner_uid in (None, owner.uid))


async def _scaling(
    state: OperatorState,
    owner: Owner,
    spec: CompressedModelSpec,
    workload: DeploymentState | None,
    keda: bool,
    missing: frozenset[str],
) -> tuple[AutoscalerState | None, tuple[PodTiming, ...]]:
    """The model's autoscaler and its serving pods' timings; asked only of models that
    autoscale (or did: the workload names its autoscaler), so a fixed count costs no
    extra reads."""
    kinds = [autoscaler_kind(spec.serving.autoscaling, state.config, keda)]
    if workload is not None:
        kinds.append(workload.autoscaler)
    found = None
    for kind in dict.fromkeys(k for k in kinds if k and k not in missing):
        obj = await state.api().get(kind, owner.namespace, deployment_name(owner.name))
        if obj is not None:
            found = AutoscalerState.from_object(obj)
            if found.kind == kinds[0]:
                break
    pods: tuple[PodTiming, ...] = ()
    if spec.serving.autoscaling is not None and workload is not None:
        selector = {LABEL_MODEL: owner.name, LABEL_COMPONENT: SERVING}
        listed = await state.api().list("Pod", owner.namespace, selector)
        pods = tuple(PodTiming.from_object(p) for p in listed)
    return found, pods


def _replace(observed: Observed, **changes: Any) -> Observed:
    from dataclasses import replace

    return replace(observed, **changes)


async def _pod_messages(
    state: OperatorState, namespace: str, jobs: Iterable[JobState]
) -> dict[str, str]:
    """Failed pods' messages, asked once per (Job, number of failures); and why pods that
    have not started are waiting."""
    found: dict[str, str] = {}
    missing = []
    for job in jobs:
        if not job.failed:
            continue
        key = (namespace, job.name, job.failed)
        if key in state.pod_messages:
            found[job.name] = state.pod_messages[key]
        else:
            missing.append(job)
    if missing:
        selectors = {j.name: pod_selector(j) for j in missing}
        fresh = await observe.job_messages(state.api(), namespace, selectors)
        for job in missing:
            message = fresh.get(job.name)
            if message:
                state.remember_pod_message((namespace, job.name, job.failed), message)
                found[job.name] = message
    starting = {j.name: pod_selector(j) for j in jobs if j.active and j.ready == 0 and not j.failed}
    if starting:  # asked each time: a pod waiting for a node can start any moment
        found.update(await observe.pending_messages(state.api(), namespace, starting))
    return found


async def apply_plan(
    state: OperatorState,
    body: Mapping[str, Any],
    owner: Owner,
    plan: Plan,
    live_status: Mapping[str, Any],
) -> None:
    client = state.api()
    adopter = owner_reference_view(body)
    for obj in plan.create:
        kopf.adopt(obj, owner=adopter)  # type: ignore[arg-type]
        try:
            created = await client.create(obj)
        except ApiError as error:
            if error.status != 404 or obj["kind"] not in OPTIONAL_KINDS:
                raise
            # The cluster does not serve this API (KEDA not installed): the next plan says so.
            state.kind_missing(obj["kind"])
            state.queue.add((owner.namespace, owner.name))
            log.warning(
                "%s/%s: the cluster has no %s API", owner.namespace, owner.name, obj["kind"]
            )
            continue
        if not created:
            if obj["kind"] == "Job":  # its name hashes its spec: it is already right
                continue
            name = obj["metadata"]["name"]
            existing = await client.get(obj["kind"], owner.namespace, name)
            if existing is None or _owned(existing, owner):  # ours after all: make it so
                await client.apply(obj)
            else:  # someone else's: never adopted; the next plan says so
                state.conflicts.setdefault(owner.uid or "", set()).add((obj["kind"], name))
                state.queue.add((owner.namespace, owner.name))
            continue
        state.metrics.children_created.labels(obj["kind"]).inc()
        log.info(
            "%s/%s: created %s %s",
            owner.namespace,
            owner.name,
            obj["kind"],
            obj["metadata"]["name"],
        )
    for obj in plan.apply:
        kopf.adopt(obj, owner=adopter)  # type: ignore[arg-type]
        await client.apply(obj)
        log.info(
            "%s/%s: applied %s %s",
            owner.namespace,
            owner.name,
            obj["kind"],
            obj["metadata"]["name"],
        )
    for kind, name in plan.delete:
        if await client.delete(kind, owner.namespace, name):
            state.metrics.children_deleted.labels(kind).inc()
            log.info("%s/%s: deleted obsolete %s %s", owner.namespace, owner.name, kind, name)
    # Against the live status (or this operator's own write the watch has not brought back
    # yet): a status someone else edited is put back to the truth.
    patch = merge_patch(live_status, plan.wire_status)
    if patch:
        version = await client.patch_status(KIND, owner.namespace, owner.name, patch)
        if owner.uid:
            based_on = (body.get("metadata") or {}).get("resourceVersion")
            state.written[owner.uid] = WrittenStatus(based_on, version, plan.wire_status)
    if owner.uid:
        facts = ModelFacts.from_status(owner.namespace, owner.name, plan.status)
        state.metrics.model_seen(owner.uid, facts)
    for event in plan.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)  # type: ignore[arg-type]


def needs_reconcile(state: OperatorState, body: Mapping[str, Any]) -> bool:
    """Whether a watch event brings something the model's status has not answered:
    a spec change (a new generation) or a new retry annotation."""
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    if metadata.get("generation") != status.get("observedGeneration"):
        return True
    retry = (metadata.get("annotations") or {}).get(ANNOTATION_RETRY)
    return retry != state.retries.get(metadata.get("uid") or "")


async def reconcile(
    state: OperatorState,
    body: Mapping[str, Any],
    children: Children,
) -> Plan:
    """Bring one CompressedModel's children and status in line with its spec. The work
    queue never runs two reconciles of one model at once."""
    metadata = body["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    started = time.monotonic()
    owner = Owner(
        name=name,
        namespace=namespace,
        uid=metadata.get("uid"),
        generation=metadata.get("generation"),
        retry=(metadata.get("annotations") or {}).get(ANNOTATION_RETRY),
    )
    uid = owner.uid or ""
    if owner.retry != state.retries.get(uid):
        # Asked to look again (after a repair, say): nothing remembered is trusted.
        state.remember_retry(uid, owner.retry)
        storage = (body.get("spec") or {}).get("storage") or {}
        if isinstance(storage.get("uri"), str):
            state.store.forget_under(storage["uri"])
    previous = state.status_base(body)
    spec, problems = read_spec(body.get("spec"))
    now = now_rfc3339()
    if spec is None:
        plan = plan_invalid(owner, problems, previous, now)
    else:
        nodes = (previous.get("serving") or {}).get("nodes")
        served_nodes = nodes if isinstance(nodes, int) else 1  # a hand-edited status: ignored
        observed = await observe_model(state, owner, spec, children, served_nodes)
        plan = plan_model(owner, spec, observed, state.config, previous, now)
    try:
        await apply_plan(state, body, owner, plan, previous)
    except ApiError as error:
        state.metrics.reconcile_errors.inc()
        raise kopf.TemporaryError(
            f"applying the plan failed: {error}", delay=state.config.backoff_seconds
        ) from None
    state.metrics.reconcile_seconds.observe(time.monotonic() - started)
    return plan
