"""Statuses the planner really writes, for the GitOps health checks' tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.plan.conftest import BASE, SOURCE, make_spec, variant_artifact

from modelpress.config import OperatorConfig
from modelpress.plan.observed import DeploymentState, JobState, Observed, Owner
from modelpress.plan.recipes import variant_locations
from modelpress.plan.reconcile import plan_invalid, plan_model

OWNER = Owner(name="tiny", namespace="ml", uid="uid-1", generation=2)


def status(observed: Observed) -> dict[str, Any]:
    return plan_model(OWNER, make_spec(), observed, OperatorConfig(), None, "now").wire_status


def built() -> dict[str, Any]:
    locations = variant_locations(make_spec(), SOURCE, OperatorConfig())
    return {key: variant_artifact(uri, 100_000_000) for key, uri in locations.values()}


def compressing() -> Observed:
    return Observed(source=SOURCE, base=BASE)


def rolling_out() -> Observed:
    return Observed(source=SOURCE, base=BASE, artifacts=built())


def served() -> Observed:
    first = plan_model(OWNER, make_spec(), rolling_out(), OperatorConfig(), None, "now")
    desired = next(o for o in first.create if o["kind"] == "Deployment")
    deployment = replace(DeploymentState.from_object(desired), owner_uid=OWNER.uid,
                         ready_replicas=1, updated_replicas=1, available_replicas=1)  # fmt: skip
    return Observed(source=SOURCE, base=BASE, artifacts=built(), deployment=deployment)


def job_failed() -> Observed:
    job = plan_model(OWNER, make_spec(), compressing(), OperatorConfig(), None, "now").create[0]
    failed = replace(JobState.from_object(job), owner_uid=OWNER.uid, failed=2,
                     failure_reason="BackoffLimitExceeded")  # fmt: skip
    return Observed(source=SOURCE, base=BASE, jobs=(failed,))


def invalid() -> dict[str, Any]:
    return plan_invalid(OWNER, ["spec.variants[0]: bad"], None, "now").wire_status
