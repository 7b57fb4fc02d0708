"""The planner: (spec, observed children, artifacts in the store) -> desired children
and the status to report.

One pure function, `plan_model`, decides everything; the kopf handlers only
read the world, call it, and apply its answer. Children have deterministic
names, so applying the same answer twice changes nothing, and nothing is
deleted unless the planner is sure it is obsolete. Each concern has its own
module: `source`, `variants`, `rollout`, `summary`; this one composes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from modelpress.api.reasons import ConditionType, Reason
from modelpress.api.resource import read_status
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import CompressedModelStatus, Condition, Summary, VariantStatus
from modelpress.config import OperatorConfig
from modelpress.plan import names
from modelpress.plan.conditions import condition, stamp
from modelpress.plan.events import Event, transitions
from modelpress.plan.jobs import headless_service
from modelpress.plan.observed import JobState, Observed, Owner
from modelpress.plan.outcome import VariantPlan
from modelpress.plan.policies import plan_policies
from modelpress.plan.recipes import variant_locations
from modelpress.plan.rollout import plan_serving
from modelpress.plan.source import SourcePlan, plan_source
from modelpress.plan.summary import kstatus_conditions, ready_condition, summary
from modelpress.plan.variants import (
    plan_variant,
    variant_status,
    variants_ready,
    waiting_for_source,
)


@dataclass(frozen=True)
class Plan:
    """What to change and what to report. Children are plain dicts without owner
    references; the caller adopts them."""

    status: CompressedModelStatus
    create: list[dict[str, Any]] = field(default_factory=list)
    """Children not seen yet. A Job found to exist is already right (its name hashes its
    spec); a Deployment or Service found to exist is applied instead."""
    apply: list[dict[str, Any]] = field(default_factory=list)
    """Deployment and Service seen with another spec: update them to exactly this."""
    delete: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) of children that are obsolete."""
    events: list[Event] = field(default_factory=list)

    @cached_property
    def wire_status(self) -> dict[str, Any]:
        """The status as the API server stores it (camelCase, unset fields left out)."""
        return self.status.to_wire()


def plan_model(
    owner: Owner,
    spec: CompressedModelSpec,
    observed: Observed,
    config: OperatorConfig,
    previous_status: Mapping[str, Any] | None,
    now: str,
) -> Plan:
    """Decide the children and the status of one CompressedModel."""
    previous = read_status(previous_status)
    owned_jobs = {j.name: j for j in observed.jobs if owner.uid is None or j.owner_uid == owner.uid}
    source = plan_source(owner, spec, observed, owned_jobs, config, previous)
    if source.base is not None:
        assert observed.source is not None
        locations = variant_locations(spec, observed.source, config)
        earlier = {v.name: v for v in previous.variants}
        outcomes = [
            plan_variant(
                owner,
                spec,
                v,
                locations[v.name],
                observed,
                source.base,
                owned_jobs,
                config,
                earlier.get(v.name),
            )
            for v in spec.variants
        ]
    else:
        outcomes = [waiting_for_source(v) for v in spec.variants]
    serving = plan_serving(owner, spec, observed, outcomes, config, previous.serving)
    policies = plan_policies(
        owner,
        observed,
        config,
        serving_wanted=serving.status is not None,
        across_nodes=serving.status is not None and (serving.status.nodes or 1) > 1,
    )

    top = [
        source.condition,
        variants_ready(outcomes, source.base is not None, owner.generation),
        serving.condition,
    ]
    ready = ready_condition(top, owner.generation)
    conditions = stamp(
        [ready, *kstatus_conditions(ready, owner.generation), *top], previous.conditions, now
    )
    variants = [
        _stamped(variant_status(o, source.base, owner.generation), previous, now) for o in outcomes
    ]
    status = CompressedModelStatus(
        observed_generation=owner.generation,
        conditions=conditions,
        source=source.status,
        variants=variants,
        serving=serving.status,
        summary=summary(conditions, variants, serving.status, observed, source.base),
    )
    gang_services = [headless_service(o.job) for o in outcomes if o.job and _indexed(o.job)]
    obsolete = _obsolete_jobs(observed, owned_jobs, source, outcomes)
    return Plan(
        status=status,
        create=[
            *policies.create,
            *source.create,
            *(o.job for o in outcomes if o.job),
            *gang_services,
            *serving.create,
        ],
        apply=[*policies.apply, *serving.apply],
        delete=[
            *obsolete,
            *_finished_gangs(observed, owned_jobs, obsolete, gang_services),
            *serving.delete,
            *policies.delete,
        ],
        events=transitions(previous, status),
    )


def _indexed(job: Mapping[str, Any]) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def _stamped(entry: VariantStatus, previous: CompressedModelStatus, now: str) -> VariantStatus:
    before = next((v for v in previous.variants if v.name == entry.name), None)
    entry.conditions = stamp(entry.conditions, before.conditions if before else [], now)
    return entry


def _finished_gangs(
    observed: Observed,
    owned_jobs: Mapping[str, JobState],
    deleted: Sequence[tuple[str, str]],
    created: Sequence[Mapping[str, Any]],
) -> list[tuple[str, str]]:
    """Headless Services whose indexed Job has finished, is gone or goes now: the gang
    has met for the last time, and the Job's TTL would otherwise leave them behind."""
    running = {name for name, job in owned_jobs.items() if not job.finished}
    keep = running - {name for _, name in deleted} | {s["metadata"]["name"] for s in created}
    return [("Service", name) for name in sorted(observed.gang_services - keep)]


def _obsolete_jobs(
    observed: Observed,
    owned_jobs: Mapping[str, JobState],
    source: SourcePlan,
    outcomes: Sequence[VariantPlan],
) -> list[tuple[str, str]]:
    """Jobs of this model that nothing needs any more, and failed ones to run again with new
    settings; only when the store was read, so nothing is deleted on a guess."""
    if observed.store_blocker is not None:
        return []
    source_known = observed.source is not None and observed.base is not None
    keep = {o.job_name for o in outcomes if o.job_name}
    if source.stale_job is None:
        keep.add(source.job_name)
    obsolete = [
        job
        for job in owned_jobs.values()
        if job.name not in keep
        # a compression Job's key is unknown until the base model is: keep it for now
        and (source_known or job.component != names.COMPRESS)
    ]
    return [(job.kind, job.name) for job in obsolete]


def plan_invalid(
    owner: Owner, problems: Sequence[str], previous_status: Mapping[str, Any] | None, now: str
) -> Plan:
    """A spec the API server accepted but the operator cannot read: say which field and
    what to change; touch no child (whatever serves keeps serving)."""
    previous = read_status(previous_status)
    message = "; ".join(problems) or "the spec cannot be read"
    ready = condition(ConditionType.READY, False, Reason.INVALID_SPEC, message, owner.generation)
    mirrors = [ready, *kstatus_conditions(ready, owner.generation)]
    replaced = {c.type for c in mirrors}
    kept: list[Condition] = [c for c in previous.conditions if c.type not in replaced]
    status = previous.model_copy(
        update={
            "conditions": stamp(mirrors, previous.conditions, now) + kept,
            "observed_generation": owner.generation
            if owner.generation is not None
            else previous.observed_generation,
            "summary": (previous.summary or Summary()).model_copy(update={"phase": "Failed"}),
        }
    )
    return Plan(status=status, events=transitions(previous, status))
