"""Conditions: transition times, Events on transitions only, minimal status patches."""

from __future__ import annotations

from modelpress.api.reasons import ConditionType as T
from modelpress.api.reasons import Reason as R
from modelpress.api.status import CompressedModelStatus, Condition, ServingStatus, VariantStatus
from modelpress.plan.conditions import condition, merge_patch, stamp
from modelpress.plan.events import transitions


def test_condition_wire_form() -> None:
    assert condition(T.READY, True, R.READY, "ok", 4).to_wire() == {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "ok",
        "observedGeneration": 4,
    }
    assert condition(T.FITS, None, R.NOT_SIZED, "", None).status == "Unknown"
    assert "observedGeneration" not in condition(T.FITS, False, R.DOES_NOT_FIT, "", None).to_wire()


def _at(item: Condition, when: str) -> Condition:
    return item.model_copy(update={"last_transition_time": when})


def test_stamp_keeps_the_time_while_the_status_holds() -> None:
    old = [_at(condition(T.READY, False, R.COMPRESSING, "", 1), "t0")]
    same = stamp([condition(T.READY, False, R.JOB_RETRYING, "x", 2)], old, "t1")
    assert same[0].last_transition_time == "t0"
    flipped = stamp([condition(T.READY, True, R.READY, "", 2)], old, "t1")
    assert flipped[0].last_transition_time == "t1"
    assert stamp([condition(T.FITS, True, R.FITS, "", 2)], [], "t1")[0].last_transition_time == "t1"


def status(
    *conditions: Condition, variants: list[VariantStatus] | None = None
) -> CompressedModelStatus:
    return CompressedModelStatus(conditions=list(conditions), variants=variants or [])


def test_events_fire_on_status_or_reason_changes_only() -> None:
    before = status(condition(T.READY, False, R.COMPRESSING, "1/2", 1))
    assert transitions(before, status(condition(T.READY, False, R.COMPRESSING, "2/2", 1))) == []
    [event] = transitions(
        before, status(condition(T.READY, False, R.JOB_FAILED, "Job x failed", 1))
    )
    assert (event.type, event.reason) == ("Warning", "JobFailed")
    assert event.message == "Ready is False: Job x failed"
    [event] = transitions(before, status(condition(T.READY, True, R.READY, "", 1)))
    assert (event.type, event.reason) == ("Normal", "Ready")


def test_variant_events_name_the_variant_and_skip_its_ready_summary() -> None:
    new = status(
        variants=[
            VariantStatus(
                name="w4",
                conditions=[
                    condition(T.READY, False, R.QUALITY_GATE_FAILED, "worse", 1),
                    condition(T.QUALITY_GATE, False, R.QUALITY_GATE_FAILED, "worse", 1),
                ],
            )
        ]
    )
    events = transitions(None, new)
    assert [(e.type, e.reason, e.message) for e in events] == [
        ("Warning", "QualityGateFailed", "variant w4: QualityGate is False: worse")
    ]


def test_merge_patch_is_minimal_and_removes_what_is_gone() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "gone": {"x": 1}}
    new = {"a": 1, "b": {"c": 2, "d": 4}, "e": [1, 2, 3]}
    assert merge_patch(old, new) == {"b": {"d": 4}, "e": [1, 2, 3], "gone": None}
    assert merge_patch(new, new) == {}
    assert merge_patch(None, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert merge_patch({"a": None}, {"a": None}) == {}


def test_progress_is_no_news() -> None:
    new = status(
        condition(T.SOURCE_READY, False, R.FETCHING, "created Job f", 1),
        condition(T.VARIANTS_READY, False, R.WAITING_FOR_SOURCE, "", 1),
        variants=[
            VariantStatus(
                name="w4",
                conditions=[condition(T.COMPRESSED, False, R.WAITING_FOR_SOURCE, "", 1)],
            )
        ],
    )
    assert transitions(None, new) == []
    built = status(
        condition(T.SOURCE_READY, True, R.STORED, "stored", 1),
        condition(T.VARIANTS_READY, True, R.BUILT, "1/1 built", 1),
        condition(T.SERVING, False, R.ROLLING_OUT, "rolling out w4", 1),
        condition(T.READY, False, R.ROLLING_OUT, "rolling out w4", 1),
    )
    assert transitions(new, built) == []


def test_the_served_variant_moving_is_news() -> None:
    serving = condition(T.SERVING, False, R.ROLLING_OUT, "rolling out w8", 2)
    before = status(condition(T.READY, True, R.READY, "", 1))
    before.serving = ServingStatus(variant="w4")
    after = status(condition(T.READY, True, R.READY, "", 1), serving)
    after.serving = ServingStatus(variant="w8")
    [event] = transitions(before, after)
    assert (event.type, event.reason) == ("Normal", "RollingOut")
    assert event.message == "serving moves from w4 to w8: rolling out w8"


def test_ready_repeats_no_reason_another_condition_tells() -> None:
    before = status(
        condition(T.READY, False, R.COMPRESSING, "", 1),
        condition(T.VARIANTS_READY, False, R.COMPRESSING, "", 1),
    )
    after = status(
        condition(T.READY, False, R.JOB_FAILED, "x", 1),
        condition(T.VARIANTS_READY, False, R.JOB_FAILED, "x", 1),
    )
    assert [e.message.split(" ")[0] for e in transitions(before, after)] == ["VariantsReady"]
    invalid = status(
        condition(T.READY, False, R.INVALID_SPEC, "spec.x: bad", 2), *after.conditions[1:]
    )
    assert [e.reason for e in transitions(after, invalid)] == ["InvalidSpec"]


def test_long_messages_are_cut_for_the_event_api() -> None:
    [event] = transitions(None, status(condition(T.READY, False, R.JOB_FAILED, "x" * 5000, 1)))
    assert len(event.message) == 1000 and event.message.endswith("...")


def test_a_reason_this_version_does_not_know_is_no_crash() -> None:
    stored = Condition(type="Ready", status="False", reason="SomethingNewer", message="m")
    assert transitions(None, status(stored)) == []
    ready = Condition(type="Ready", status="True", reason="SomethingNewer", message="m")
    [event] = transitions(status(stored), status(ready))
    assert (event.type, event.reason) == ("Normal", "SomethingNewer")
