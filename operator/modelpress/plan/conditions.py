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


def _event_for(condition: Mapping[str, Any], prefix: str) -> Event:
    reason = condition.get("reason") or condition["type"]
    status = condition.get("status")
    warning = status != "True" and reason in WARNING_REASONS
    message = f"{prefix}{condition['type']} is {status}"
    if condition.get("message"):
        message += f": {condition['message']}"
    return Event("Warning" if warning else "Normal", reason, message)


def _changed(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
    if before is None:
        return True
    return before.get("status") != after.get("status") or before.get("reason") != after.get(
        "reason"
    )


def transitions(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Event]:
    """An Event for every condition (resource and variant) whose status or reason changed."""
    old = old or {}
    events = []
    old_conditions = {c.get("type"): c for c in old.get("conditions") or []}
    for item in new.get("conditions") or []:
        if _changed(old_conditions.get(item["type"]), item):
            events.append(_event_for(item, ""))
    old_variants = {v.get("name"): v for v in old.get("variants") or []}
    for variant in new.get("variants") or []:
        before = old_variants.get(variant["name"]) or {}
        before_conditions = {c.get("type"): c for c in before.get("conditions") or []}
        for item in variant.get("conditions") or []:
            if item["type"] == "Ready":
                continue  # the variant's Ready repeats its other conditions
            if _changed(before_conditions.get(item["type"]), item):
                events.append(_event_for(item, f"variant {variant['name']}: "))
    return events


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
