"""What the operator keeps per model stays small and goes when it is no longer needed:
a status write is remembered only until the watch brings it back, pod messages have a
ceiling, and a deleted model leaves nothing behind."""

from __future__ import annotations

from typing import Any

from modelpress.api.status import CompressedModelStatus
from modelpress.config import OperatorConfig
from modelpress.handlers import state as state_module
from modelpress.handlers.metrics import ModelFacts
from modelpress.handlers.state import OperatorState, WrittenStatus


def body(version: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"uid": "u1", "name": "m", "namespace": "ml", "resourceVersion": version},
        "status": status or {},
    }


def test_a_write_is_the_base_only_while_the_watch_lags() -> None:
    state = OperatorState(OperatorConfig())
    ours = {"observedGeneration": 2}
    state.written["u1"] = WrittenStatus(based_on="5", result="6", status=ours)
    assert state.status_base(body("5", {"observedGeneration": 1})) == ours, "watch lags"
    assert "u1" in state.written
    state.caught_up(body("6", ours))
    assert "u1" not in state.written, "the watch brought it back: forgotten"


def test_a_status_someone_else_wrote_after_ours_is_seen() -> None:
    state = OperatorState(OperatorConfig())
    state.written["u1"] = WrittenStatus(based_on="5", result="6", status={"observedGeneration": 2})
    edited = {"observedGeneration": 2, "summary": {"phase": "Hacked"}}
    assert state.status_base(body("7", edited)) == edited
    assert "u1" not in state.written


def test_pod_messages_have_a_ceiling(monkeypatch) -> None:
    monkeypatch.setattr(state_module, "POD_MESSAGES_KEPT", 3)
    state = OperatorState(OperatorConfig())
    for failures in range(10):
        state.remember_pod_message(("ml", "job", failures), f"OOMKilled {failures}")
    assert list(state.pod_messages) == [("ml", "job", 7), ("ml", "job", 8), ("ml", "job", 9)]


def test_a_deleted_model_leaves_nothing_behind() -> None:
    state = OperatorState(OperatorConfig())
    state.keep_model(("ml", "m"), body("5", {"observedGeneration": 1}))
    assert state.model(("ml", "m")) == body("5", {"observedGeneration": 1})
    state.queue.add(("ml", "m"))
    state.written["u1"] = WrittenStatus("5", "6", {})
    state.remember_retry("u1", "now")
    state.conflicts["u1"] = {("Service", "m")}
    state.metrics.model_seen("u1", ModelFacts.from_status("ml", "m", CompressedModelStatus()))
    state.forget("ml", "m", "u1")
    assert state.models == {} and len(state.queue) == 0
    assert state.written == {} and state.retries == {} and state.conflicts == {}
    assert state.metrics.models == {}
