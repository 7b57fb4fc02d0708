"""Ready, and the one-line digest behind `kubectl get`'s columns."""

from __future__ import annotations

from collections.abc import Sequence

from modelpress.api.reasons import ConditionType, Reason, parse_reason
from modelpress.api.status import Condition, ServingStatus, Summary, VariantStatus
from modelpress.plan.conditions import condition, is_true
from modelpress.plan.observed import Artifact, Observed


def ready_condition(top: Sequence[Condition], generation: int | None) -> Condition:
    """Ready mirrors the first resource condition that holds it back."""
    for item in top:
        if item.status == "True":
            continue
        if item.type == ConditionType.SERVING and item.reason == Reason.SERVING_DISABLED:
            continue
        reason = parse_reason(item.reason)
        assert reason is not None, "the planner writes only known reasons"
        return condition(ConditionType.READY, False, reason, item.message, generation)
    return condition(
        ConditionType.READY,
        True,
        Reason.READY,
        "every variant is built and serving is up",
        generation,
    )


def kstatus_conditions(ready: Condition, generation: int | None) -> list[Condition]:
    """Reconciling and Stalled, the conditions kstatus reads (Flux's `wait` and health
    checks, kpt, Config Sync): work under way, or stopped until someone acts. Both
    carry Ready's reason and message; both are False once Ready is True."""
    reason = parse_reason(ready.reason) or Reason.READY
    done = ready.status == "True"
    stalled = not done and reason.failed
    return [
        condition(
            ConditionType.RECONCILING, not done and not stalled, reason, ready.message, generation
        ),
        condition(ConditionType.STALLED, stalled, reason, ready.message, generation),
    ]


def phase(conditions: Sequence[Condition]) -> str:
    """A one-word digest for people; programs read the conditions."""
    failing = (parse_reason(c.reason) for c in conditions if c.status != "True")
    if any(reason is not None and reason.failed for reason in failing):
        return "Failed"
    if is_true(conditions, ConditionType.READY):
        return "Ready"
    if not is_true(conditions, ConditionType.SOURCE_READY):
        return "Pending"
    if not is_true(conditions, ConditionType.VARIANTS_READY):
        return "Compressing"
    return "Serving"


def summary(
    conditions: Sequence[Condition],
    variants: Sequence[VariantStatus],
    serving: ServingStatus | None,
    observed: Observed,
    base: Artifact | None,
) -> Summary:
    ready = sum(1 for v in variants if is_true(v.conditions, ConditionType.READY))
    result = Summary(phase=phase(conditions), variants=f"{ready}/{len(variants)}")
    if serving is None or not serving.variant:
        return result
    result.gpus = serving.gpus
    served = _served_artifact(serving, variants, observed)
    if served is not None:
        if base is not None and base.total_bytes:
            result.size_ratio = round(served.total_bytes / base.total_bytes, 4)
        metrics = served.metrics
        if metrics is not None and metrics.perplexity_increase is not None:
            result.perplexity_increase = round(metrics.perplexity_increase, 4)
    return result


def _served_artifact(
    serving: ServingStatus, variants: Sequence[VariantStatus], observed: Observed
) -> Artifact | None:
    """What actually serves: the running Deployment's artifact, else the chosen one's."""
    served_key = observed.deployment.key if observed.deployment else None
    served = observed.artifacts.get(served_key) if served_key else None
    if served is not None:
        return served
    entry = next((v for v in variants if v.name == serving.variant), None)
    return observed.artifacts.get(entry.key) if entry is not None and entry.key else None
