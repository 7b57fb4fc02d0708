"""Conditions, their transitions, the Events those transitions deserve, and the
minimal status patch.

Conditions follow the Kubernetes API conventions. `lastTransitionTime` moves
only when a condition's status changes, so an unchanged world produces an
unchanged status, an empty patch and no Event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Reasons that need someone to act: Warning Events, phase Failed.
FAILURE_REASONS = frozenset(
    {
        "InvalidSpec",
        "SecretNotFound",
        "InvalidSecret",
        "StoreUnavailable",
        "FetchFailed",
        "FetchIncomplete",
        "JobFailed",
        "PublishMissing",
        "CompressionDoesNotFit",
        "UnknownGpuProduct",
        "QualityGateFailed",
        "DoesNotFit",
        "SizingFailed",
        "NoVariantQualifies",
        "VariantFailed",
        "UnknownVariant",
        "RolloutStalled",
    }
)
#: Reasons worth a Warning Event although they may resolve on their own.
WARNING_REASONS = FAILURE_REASONS | {"JobRetrying"}
#: Reasons of work in progress: a condition first seen with one of these is no news,
#: and a variant entering one is already told by VariantsReady.
PROGRESS_REASONS = frozenset(
    {
        "WaitingForSource",
        "WaitingForVariants",
        "WaitingForVariant",
        "WaitingForSizing",
        "NotEvaluated",
        "NotSized",
        "Compressing",
    }
)


def condition(
    type_: str, status: bool | None, reason: str, message: str, generation: int | None
) -> dict[str, Any]:
    """One condition in wire form (lastTransitionTime is added by `stamp`)."""
    value = "Unknown" if status is None else ("True" if status else "False")
    result: dict[str, Any] = {"type": type_, "status": value, "reason": reason, "message": message}
    if generation is not None:
        result["observedGeneration"] = generation
    return result


def is_true(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def stamp(
    new: list[dict[str, Any]], old: Iterable[Mapping[str, Any]] | None, now: str
) -> list[dict[str, Any]]:
    """`new` with lastTransitionTime carried over from `old` when the status is unchanged."""
    previous = {c.get("type"): c for c in old or []}
    stamped = []
    for item in new:
        before = previous.get(item["type"])
        unchanged = (
            before is not None
            and before.get("status") == item["status"]
            and before.get("lastTransitionTime")
        )
        when = before["lastTransitionTime"] if unchanged else now  # type: ignore[index]
        stamped.append({**item, "lastTransitionTime": when})
    return stamped


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the CompressedModel."""

    type: str
    reason: str
    message: str


EVENT_MESSAGE_LIMIT = 1000


def _event_for(condition: Mapping[str, Any], prefix: str) -> Event:
    reason = condition.get("reason") or condition["type"]
    warning = condition.get("status") != "True" and reason in WARNING_REASONS
    return Event("Warning" if warning else "Normal", reason, prefix + _describe(condition))


def _describe(condition: Mapping[str, Any]) -> str:
    text = f"{condition['type']} is {condition.get('status')}"
    if condition.get("message"):
        text += f": {condition['message']}"
    return text


def _changed(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
    """A transition: a new status or reason. A condition first seen waiting is not one."""
    if before is None:
        return after.get("status") != "Unknown" and after.get("reason") not in PROGRESS_REASONS
    return before.get("status") != after.get("status") or before.get("reason") != after.get(
        "reason"
    )


def _truncate(event: Event) -> Event:
    if len(event.message) <= EVENT_MESSAGE_LIMIT:
        return event
    return Event(event.type, event.reason, event.message[: EVENT_MESSAGE_LIMIT - 3] + "...")


def transitions(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Event]:
    """The Events a status change deserves.

    One per resource condition whose status or reason changed (Ready when its status
    flips, or for a reason no other condition tells, like InvalidSpec; a condition first seen
    waiting is no news). One per variant whose conditions reached an outcome, naming
    each change, so a variant built, evaluated and sized in one step is one Event.
    """
    old = old or {}
    events = []
    old_conditions = {c.get("type"): c for c in old.get("conditions") or []}
    conditions = new.get("conditions") or []
    for item in conditions:
        before = old_conditions.get(item["type"])
        if item["type"] == "Ready":
            told_elsewhere = any(
                c["type"] != "Ready" and c.get("reason") == item.get("reason") for c in conditions
            )
            flipped = before is None or before.get("status") != item.get("status")
            if flipped or (_changed(before, item) and not told_elsewhere):
                events.append(_event_for(item, ""))
        elif _changed(before, item):
            events.append(_event_for(item, ""))
    old_variants = {v.get("name"): v for v in old.get("variants") or []}
    for variant in new.get("variants") or []:
        before = old_variants.get(variant["name"]) or {}
        before_conditions = {c.get("type"): c for c in before.get("conditions") or []}
        changed = [
            item
            for item in variant.get("conditions") or []
            if item["type"] != "Ready"
            and item.get("reason") not in PROGRESS_REASONS
            and _changed(before_conditions.get(item["type"]), item)
        ]
        if changed:
            events.append(_variant_event(variant, changed, before_conditions))
    return [_truncate(e) for e in events]


def _variant_event(
    variant: Mapping[str, Any],
    changed: list[Mapping[str, Any]],
    before: Mapping[str, Mapping[str, Any]],
) -> Event:
    warnings = [
        c for c in changed if c.get("status") != "True" and c.get("reason") in WARNING_REASONS
    ]
    ready = next((c for c in variant.get("conditions") or [] if c["type"] == "Ready"), None)
    became_ready = (
        ready is not None
        and ready.get("status") == "True"
        and (before.get("Ready") or {}).get("status") != "True"
    )
    if warnings:
        kind, reason = "Warning", warnings[0].get("reason") or "Failed"
    elif became_ready:
        kind, reason = "Normal", "VariantReady"
    else:
        kind, reason = "Normal", changed[0].get("reason") or changed[0]["type"]
    message = f"variant {variant['name']}: " + "; ".join(_describe(c) for c in changed)
    return Event(kind, reason, message)


def merge_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) turning `old` into `new`; empty when equal.

    Keys missing from `new` become null (removed); lists are replaced whole.
    """
    old = old or {}
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif before != value or key not in old:
            patch[key] = value
    return patch
