"""Conditions: transition times, Events on transitions only, minimal status patches."""

from __future__ import annotations

from modelpress.plan.conditions import condition, merge_patch, stamp, transitions


def test_condition_wire_form() -> None:
    assert condition("Ready", True, "Ready", "ok", 4) == {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "ok",
        "observedGeneration": 4,
    }
    assert condition("Fits", None, "NotSized", "", None)["status"] == "Unknown"
    assert "observedGeneration" not in condition("Fits", False, "DoesNotFit", "", None)


def test_stamp_keeps_the_time_while_the_status_holds() -> None:
    old = [{**condition("Ready", False, "Compressing", "", 1), "lastTransitionTime": "t0"}]
    same = stamp([condition("Ready", False, "JobRetrying", "x", 2)], old, "t1")
    assert same[0]["lastTransitionTime"] == "t0"
    flipped = stamp([condition("Ready", True, "Ready", "", 2)], old, "t1")
    assert flipped[0]["lastTransitionTime"] == "t1"
    assert stamp([condition("New", True, "Ok", "", 2)], None, "t1")[0]["lastTransitionTime"] == "t1"


def status(*conditions: dict, variants: list | None = None) -> dict:
    return {"conditions": list(conditions), "variants": variants or []}


def test_events_fire_on_status_or_reason_changes_only() -> None:
    before = status(condition("Ready", False, "Compressing", "1/2", 1))
    assert transitions(before, status(condition("Ready", False, "Compressing", "2/2", 1))) == []
    [event] = transitions(before, status(condition("Ready", False, "JobFailed", "Job x failed", 1)))
    assert (event.type, event.reason) == ("Warning", "JobFailed")
    assert event.message == "Ready is False: Job x failed"
    [event] = transitions(before, status(condition("Ready", True, "Ready", "", 1)))
    assert (event.type, event.reason) == ("Normal", "Ready")


def test_variant_events_name_the_variant_and_skip_its_ready_summary() -> None:
    new = status(
        variants=[
            {
                "name": "w4",
                "conditions": [
                    condition("Ready", False, "QualityGateFailed", "worse", 1),
                    condition("QualityGate", False, "QualityGateFailed", "worse", 1),
                ],
            }
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


def test_a_condition_first_seen_waiting_is_no_news() -> None:
    new = status(
        condition("SourceReady", False, "Fetching", "created Job f", 1),
        condition("VariantsReady", False, "WaitingForSource", "", 1),
        variants=[
            {
                "name": "w4",
                "conditions": [condition("Compressed", False, "WaitingForSource", "", 1)],
            }
        ],
    )
    assert [e.reason for e in transitions(None, new)] == ["Fetching"]


def test_ready_repeats_no_reason_another_condition_tells() -> None:
    before = status(
        condition("Ready", False, "Compressing", "", 1),
        condition("VariantsReady", False, "Compressing", "", 1),
    )
    after = status(
        condition("Ready", False, "JobFailed", "x", 1),
        condition("VariantsReady", False, "JobFailed", "x", 1),
    )
    assert [e.message.split(" ")[0] for e in transitions(before, after)] == ["VariantsReady"]
    invalid = status(
        condition("Ready", False, "InvalidSpec", "spec.x: bad", 2), *after["conditions"][1:]
    )
    assert [e.reason for e in transitions(after, invalid)] == ["InvalidSpec"]


def test_long_messages_are_cut_for_the_event_api() -> None:
    [event] = transitions(None, status(condition("Ready", False, "JobFailed", "x" * 5000, 1)))
    assert len(event.message) == 1000 and event.message.endswith("...")
