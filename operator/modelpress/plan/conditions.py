"""Conditions and the minimal status patch.

Conditions follow the Kubernetes API conventions. `lastTransitionTime` moves
only when a condition's status changes, so an unchanged world produces an
unchanged status and an empty patch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from modelpress.api.reasons import ConditionType, Reason
from modelpress.api.status import Condition, ConditionStatus


def now_rfc3339() -> str:
    """The time a transition is stamped with."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: ConditionType, status: bool | None, reason: Reason, message: str, generation: int | None
) -> Condition:
    """One condition (lastTransitionTime is added by `stamp`)."""
    value: ConditionStatus = "Unknown" if status is None else ("True" if status else "False")
    return Condition(
        type=type_, status=value, reason=reason, message=message, observed_generation=generation
    )


def find(conditions: Iterable[Condition], type_: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Iterable[Condition], type_: ConditionType) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def stamp(new: Iterable[Condition], old: Iterable[Condition], now: str) -> list[Condition]:
    """`new` with lastTransitionTime carried over from `old` when the status is unchanged."""
    previous = {c.type: c for c in old}
    stamped = []
    for item in new:
        before = previous.get(item.type)
        unchanged = before is not None and before.status == item.status
        when = before.last_transition_time if unchanged and before else None
        stamped.append(item.model_copy(update={"last_transition_time": when or now}))
    return stamped


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


def ending(status: Mapping[str, Any], done: str) -> tuple[bool, str | None, str | None]:
    """How a Job-like object ended, from its status conditions: (whether its `done`
    condition holds, the Failed condition's reason and message, or None and None)."""
    complete = False
    reason = message = None
    for found in status.get("conditions") or []:
        if found.get("status") != "True":
            continue
        if found.get("type") == done:
            complete = True
        elif found.get("type") == "Failed":
            reason = found.get("reason") or "Failed"
            message = found.get("message") or ""
    return complete, reason, message
