"""Argo CD's health check, run in a real Lua interpreter (lupa) on statuses the planner
really writes: Progressing while work goes on, Degraded on a failure, Healthy when Ready
is True for the current generation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.api.planned import (
    compressing,
    invalid,
    job_failed,
    rolling_out,
    served,
    status,
)

from modelpress.api.health import argocd_lua
from modelpress.api.reasons import Reason
from modelpress.plan.observed import Blocker, Observed

lupa = pytest.importorskip("lupa")
ROOT = Path(__file__).resolve().parents[2]


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


def test_no_status_yet_is_progressing() -> None:
    assert health(None)[0] == "Progressing"


def test_fetching_and_compressing_are_progressing() -> None:
    assert health(status(Observed()))[0] == "Progressing"
    verdict, message = health(status(compressing()))
    assert verdict == "Progressing" and "Compressing" in message


def test_a_failed_job_is_degraded_naming_the_condition() -> None:
    verdict, message = health(status(job_failed()))
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
    assert health(invalid()) == ("Degraded", "Ready InvalidSpec: spec.variants[0]: bad")


def test_rolling_out_is_progressing_and_serving_is_healthy() -> None:
    assert health(status(rolling_out()))[0] == "Progressing"
    assert health(status(served()))[0] == "Healthy"


def test_a_status_of_an_older_generation_is_progressing() -> None:
    assert health(status(served()), generation=3)[0] == "Progressing"


def test_the_shipped_file_is_the_generated_script() -> None:
    shipped = ROOT / "charts" / "modelpress" / "files" / "argocd-health.lua"
    assert shipped.read_text() == argocd_lua(), "regenerate: modelpress argocd-health"
