"""Argo CD's health check, run in a real Lua interpreter (lupa) on statuses the planner
really writes: Progressing while work goes on, Degraded on a failure, Healthy when Ready
is True for the current generation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.plan.conftest import BASE, SOURCE, make_spec, variant_artifact

from modelpress.api.health import argocd_lua
from modelpress.api.reasons import Reason
from modelpress.config import OperatorConfig
from modelpress.plan.observed import Blocker, DeploymentState, JobState, Observed, Owner
from modelpress.plan.recipes import variant_locations
from modelpress.plan.reconcile import plan_invalid, plan_model

lupa = pytest.importorskip("lupa")
ROOT = Path(__file__).resolve().parents[2]
OWNER = Owner(name="tiny", namespace="ml", uid="uid-1", generation=2)


def health(status: dict[str, Any] | None, generation: int = 2) -> tuple[str, str]:
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    obj: dict[str, Any] = {"metadata": {"name": "tiny", "generation": generation}}
    if status is not None:
        obj["status"] = status
    check = runtime.eval(f"function(obj)\n{argocd_lua()}\nend")
    result = check(_lua(runtime, obj))
    return result["status"], result["message"]


def _lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_lua(runtime, v) for v in value])
    return value


def status(observed: Observed) -> dict[str, Any]:
    return plan_model(OWNER, make_spec(), observed, OperatorConfig(), None, "now").wire_status


def built() -> dict[str, Any]:
    locations = variant_locations(make_spec(), SOURCE, OperatorConfig())
    return {key: variant_artifact(uri, 100_000_000) for key, uri in locations.values()}


def served() -> Observed:
    first = plan_model(OWNER, make_spec(), Observed(source=SOURCE, base=BASE, artifacts=built()),
                       OperatorConfig(), None, "now")  # fmt: skip
    desired = next(o for o in first.create if o["kind"] == "Deployment")
    deployment = replace(DeploymentState.from_object(desired), owner_uid=OWNER.uid,
                         ready_replicas=1, updated_replicas=1, available_replicas=1)  # fmt: skip
    return Observed(source=SOURCE, base=BASE, artifacts=built(), deployment=deployment)


def test_no_status_yet_is_progressing() -> None:
    assert health(None)[0] == "Progressing"


def test_fetching_and_compressing_are_progressing() -> None:
    assert health(status(Observed()))[0] == "Progressing"
    compressing = health(status(Observed(source=SOURCE, base=BASE)))
    assert compressing == ("Progressing", compressing[1]) and "Compressing" in compressing[1]


def test_a_failed_job_is_degraded_naming_the_condition() -> None:
    job = plan_model(OWNER, make_spec(), Observed(source=SOURCE, base=BASE), OperatorConfig(),
                     None, "now").create[0]  # fmt: skip
    failed = replace(JobState.from_object(job), owner_uid=OWNER.uid, failed=2,
                     failure_reason="BackoffLimitExceeded")  # fmt: skip
    verdict, message = health(status(Observed(source=SOURCE, base=BASE, jobs=(failed,))))
    assert verdict == "Degraded" and "JobFailed" in message


@pytest.mark.parametrize(
    "observed",
    [
        Observed(store_blocker=Blocker(Reason.STORE_UNAVAILABLE, "endpoint down")),
        Observed(store_blocker=Blocker(Reason.SECRET_NOT_FOUND, "no Secret")),
    ],
)
def test_a_missing_prerequisite_is_degraded(observed: Observed) -> None:
    assert health(status(observed))[0] == "Degraded"


def test_an_invalid_spec_is_degraded() -> None:
    invalid = plan_invalid(OWNER, ["spec.variants[0]: bad"], None, "now").wire_status
    assert health(invalid) == ("Degraded", "Ready InvalidSpec: spec.variants[0]: bad")


def test_rolling_out_is_progressing_and_serving_is_healthy() -> None:
    rolling = status(Observed(source=SOURCE, base=BASE, artifacts=built()))
    assert health(rolling)[0] == "Progressing"
    assert health(status(served()))[0] == "Healthy"


def test_a_status_of_an_older_generation_is_progressing() -> None:
    assert health(status(served()), generation=3)[0] == "Progressing"


def test_the_shipped_file_is_the_generated_script() -> None:
    shipped = ROOT / "charts" / "modelpress" / "files" / "argocd-health.lua"
    assert shipped.read_text() == argocd_lua(), "regenerate: modelpress argocd-health"
