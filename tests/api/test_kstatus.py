"""kstatus's generic rules (the port in modelpress.api.kstatus), held to the examples
its documentation gives, then applied to statuses the planner really writes: what
Flux's `wait` would conclude at each step."""

from __future__ import annotations

from typing import Any

import pytest
from tests.api.planned import compressing, invalid, job_failed, rolling_out, served, status

from modelpress.api.kstatus import compute
from modelpress.api.reasons import Reason
from modelpress.plan.observed import Blocker, Observed


def obj(status: dict[str, Any] | None = None, generation: int = 2, **metadata: Any) -> dict:
    body: dict[str, Any] = {
        "kind": "CompressedModel",
        "metadata": {"generation": generation, **metadata},
    }
    if status is not None:
        body["status"] = status
    return body


# --- the rules, on the documented examples ------------------------------------------------


def test_deletion_wins_over_everything() -> None:
    result = compute(obj({"observedGeneration": 1}, deletionTimestamp="2026-01-01T00:00:00Z"))
    assert result.status == "Terminating"


def test_an_unobserved_generation_is_in_progress() -> None:
    result = compute(obj({"observedGeneration": 1}))
    assert result.status == "InProgress"
    assert result.message == "CompressedModel generation is 2, but latest observed generation is 1"


def test_reconciling_true_is_in_progress_and_stalled_true_is_failed() -> None:
    reconciling = {"type": "Reconciling", "status": "True", "reason": "R", "message": "working"}
    stalled = {"type": "Stalled", "status": "True", "reason": "S", "message": "stuck"}
    assert (
        compute(obj({"observedGeneration": 2, "conditions": [reconciling]})).status == "InProgress"
    )
    assert compute(obj({"observedGeneration": 2, "conditions": [stalled]})).message == "stuck"
    assert compute(obj({"observedGeneration": 2, "conditions": [stalled]})).status == "Failed"


def test_without_those_conditions_a_custom_resource_is_current() -> None:
    """Why the operator must write Reconciling and Stalled: Ready alone means nothing to
    kstatus, and no status at all reads as done."""
    ready_false = {"type": "Ready", "status": "False", "reason": "X", "message": ""}
    assert compute(obj({"observedGeneration": 2, "conditions": [ready_false]})).status == "Current"
    assert compute(obj()).status == "Current"


# --- what the operator writes, as kstatus reads it ------------------------------------------


@pytest.mark.parametrize(
    "observed",
    [Observed(), compressing(), rolling_out()],
    ids=["fetching", "compressing", "rolling-out"],
)
def test_work_under_way_is_in_progress(observed: Observed) -> None:
    assert compute(obj(status(observed))).status == "InProgress"


@pytest.mark.parametrize(
    "observed",
    [
        job_failed(),
        Observed(store_blocker=Blocker(Reason.STORE_UNAVAILABLE, "endpoint down")),
        Observed(store_blocker=Blocker(Reason.SECRET_NOT_FOUND, "no Secret")),
    ],
    ids=["job-failed", "store-down", "no-secret"],
)
def test_a_failure_someone_must_fix_is_failed(observed: Observed) -> None:
    assert compute(obj(status(observed))).status == "Failed"


def test_an_invalid_spec_is_failed_naming_the_field() -> None:
    result = compute(obj(invalid()))
    assert result.status == "Failed" and "spec.variants[0]" in result.message


def test_ready_for_the_current_generation_is_current_and_not_before() -> None:
    assert compute(obj(status(served()))).status == "Current"
    assert compute(obj(status(served()), generation=3)).status == "InProgress"
