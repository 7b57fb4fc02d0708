"""The Events a status change deserves: transitions people act on, nothing else.

A condition's severity comes from its reason (`api.reasons`); a reason read back
from a status this version does not know neither warns nor waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelpress.api.reasons import ConditionType, Reason, parse_reason
from modelpress.api.status import CompressedModelStatus, Condition, VariantStatus

EVENT_MESSAGE_LIMIT = 1000
MIRRORS = (ConditionType.RECONCILING, ConditionType.STALLED)
"""Conditions that repeat Ready for kstatus: never news of their own."""


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
    """The Events a status change deserves: what people act on, not progress.

    - Ready flipping, either way (on the way up, that is the one Normal Event);
    - any condition, of the resource or of a variant, turning to a warning reason (a
      variant's changes in one step are one Event naming each); Ready repeats no
      warning another condition already tells;
    - the served variant changing to another one (a rollout that moves traffic).

    Progress (fetching, compressing, built, the first rollout) is in the status and
    in `kubectl get`; posting it would cost an API write per step per model.
    """
    old = old or CompressedModelStatus()
    events = []
    old_conditions = {c.type: c for c in old.conditions}
    for item in new.conditions:
        before = old_conditions.get(item.type)
        if item.type in MIRRORS or not _changed(before, item):
            continue
        if item.type == ConditionType.READY:
            told_elsewhere = any(
                c.type != ConditionType.READY and c.type not in MIRRORS and c.reason == item.reason
                for c in new.conditions
            )
            was_true = before is not None and before.status == "True"
            flipped = was_true != (item.status == "True")
            if flipped or (_warns(item) and not told_elsewhere):
                events.append(_event_for(item))
        elif _warns(item):
            events.append(_event_for(item))
    switch = _serving_switch(old, new)
    if switch is not None:
        events.append(switch)
    old_variants = {v.name: v for v in old.variants}
    for variant in new.variants:
        earlier = old_variants.get(variant.name)
        before_conditions = {c.type: c for c in (earlier.conditions if earlier else [])}
        warnings = [
            item
            for item in variant.conditions
            if item.type != ConditionType.READY
            and _warns(item)
            and _changed(before_conditions.get(item.type), item)
        ]
        if warnings:
            events.append(_variant_event(variant, warnings))
    return [_truncate(e) for e in events]


def _serving_switch(old: CompressedModelStatus, new: CompressedModelStatus) -> Event | None:
    before = old.serving.variant if old.serving else None
    after = new.serving.variant if new.serving else None
    if before is None or after is None or before == after:
        return None
    serving = next((c for c in new.conditions if c.type == ConditionType.SERVING), None)
    detail = f": {serving.message}" if serving is not None and serving.message else ""
    message = f"serving moves from {before} to {after}{detail}"
    return Event("Normal", Reason.ROLLING_OUT, message)


def _variant_event(variant: VariantStatus, warnings: Sequence[Condition]) -> Event:
    message = f"variant {variant.name}: " + "; ".join(_describe(c) for c in warnings)
    return Event("Warning", warnings[0].reason or "Failed", message)
