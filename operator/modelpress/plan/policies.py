"""The NetworkPolicies beside a model's pods: who may reach its vLLM endpoint, and where
its Jobs may connect (when the platform lists it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelpress.config import OperatorConfig
from modelpress.plan import names, serving
from modelpress.plan.observed import Observed, Owner


@dataclass(frozen=True)
class PolicyPlan:
    create: list[dict[str, Any]] = field(default_factory=list)
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)


def plan_policies(
    owner: Owner,
    observed: Observed,
    config: OperatorConfig,
    serving_wanted: bool,
    across_nodes: bool = False,
) -> PolicyPlan:
    """Policies to create or update, and those no longer wanted (only ones this model owns)."""
    wanted = []
    if serving_wanted and config.network_policies.serving:
        policy = serving.serving_policy(owner.name, owner.namespace, config, across_nodes)
        wanted.append(policy)
    jobs = serving.jobs_policy(owner.name, owner.namespace, config)
    if jobs is not None:
        wanted.append(jobs)
    plan = PolicyPlan()
    for policy in wanted:
        name = policy["metadata"]["name"]
        if ("NetworkPolicy", name) in observed.name_conflicts:
            continue  # someone else's: left alone (reported by the Serving condition)
        current = observed.network_policies.get(name)
        if current is None or (owner.uid is not None and current.owner_uid != owner.uid):
            plan.create.append(policy)
        elif current.spec_hash != names.spec_hash(policy):
            plan.apply.append(policy)
    wanted_names = {p["metadata"]["name"] for p in wanted}
    for name, current in observed.network_policies.items():
        ours = owner.uid is None or current.owner_uid == owner.uid
        if name not in wanted_names and ours:
            plan.delete.append(("NetworkPolicy", name))
    return plan
