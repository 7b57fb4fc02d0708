"""The Events a status change deserves: transitions people act on, nothing else.

A condition's severity comes from its reason (`api.reasons`); a reason read back
from an older status that this version does not know counts as news.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelpress.api.reasons import ConditionType, parse_reason
from modelpress.api.status import CompressedModelStatus, Condition, VariantStatus

EVENT_MESSAGE_LIMIT = 1000


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the CompressedModel."""

    type: str
    reason: str
    message: str


def _warns(condition: Condition) -> bool:
    reason = parse_reason(condition.reason)
    return condition.status != "True" and reason is not None and reason.warns


def _pending(condition: Condition) -> bool:
    reason = parse_reason(condition.reason)
    return reason is not None and reason.pending


def _event_for(condition: Condition) -> Event:
    kind = "Warning" if _warns(condition) else "Normal"
    return Event(kind, condition.reason or condition.type, _describe(condition))


def _describe(condition: Condition) -> str:
    text = f"{condition.type} is {condition.status}"
    if condition.message:
        text += f": {condition.message}"
    return text


def _changed(before: Condition | None, after: Condition) -> bool:
    """A transition: a new status or reason. A condition first seen pending is not one."""
    if before is None:
        return after.status != "Unknown" and not _pending(after)
    return before.status != after.status or before.reason != after.reason


def _truncate(event: Event) -> Event:
    if len(event.message) <= EVENT_MESSAGE_LIMIT:
        return event
    return Event(event.type, event.reason, event.message[: EVENT_MESSAGE_LIMIT - 3] + "...")


def transitions(old: CompressedModelStatus | None, new: CompressedModelStatus) -> list[Event]:
    """The Events a status change deserves.

    One per resource condition whose status or reason changed (Ready when its status
    flips, or for a reason no other condition tells, like InvalidSpec; a condition first
    seen pending is no news). One per variant whose conditions reached an outcome, naming
    each change, so a variant built, evaluated and sized in one step is one Event.
    """
    old = old or CompressedModelStatus()
    events = []
    old_conditions = {c.type: c for c in old.conditions}
    for item in new.conditions:
        before = old_conditions.get(item.type)
        if item.type == ConditionType.READY:
            told_elsewhere = any(
                c.type != ConditionType.READY and c.reason == item.reason for c in new.conditions
            )
            flipped = before is None or before.status != item.status
            if flipped or (_changed(before, item) and not told_elsewhere):
                events.append(_event_for(item))
        elif _changed(before, item):
            events.append(_event_for(item))
    old_variants = {v.name: v for v in old.variants}
    for variant in new.variants:
        earlier = old_variants.get(variant.name)
        before_conditions = {c.type: c for c in (earlier.conditions if earlier else [])}
        changed = [
            item
            for item in variant.conditions
            if item.type != ConditionType.READY
            and not _pending(item)
            and _changed(before_conditions.get(item.type), item)
        ]
        if changed:
            events.append(_variant_event(variant, changed, before_conditions))
    return [_truncate(e) for e in events]


def _variant_event(
    variant: VariantStatus, changed: Sequence[Condition], before: Mapping[str, Condition]
) -> Event:
    warnings = [c for c in changed if _warns(c)]
    ready = next((c for c in variant.conditions if c.type == ConditionType.READY), None)
    was_ready = before.get(ConditionType.READY)
    became_ready = (
        ready is not None
        and ready.status == "True"
        and (was_ready is None or was_ready.status != "True")
    )
    if warnings:
        kind, reason = "Warning", warnings[0].reason or "Failed"
    elif became_ready:
        kind, reason = "Normal", "VariantReady"
    else:
        kind, reason = "Normal", changed[0].reason or changed[0].type
    message = f"variant {variant.name}: " + "; ".join(_describe(c) for c in changed)
    return Event(kind, reason, message)
