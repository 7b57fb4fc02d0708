"""A variant's compression Job over its life: created, left alone while it runs, run again
when its settings change, its artifact vanished or the user asks, and remembered
once failed, after the Job itself is gone."""

from __future__ import annotations

from typing import Any

from modelpress.api.reasons import ConditionType, Reason, parse_reason
from modelpress.api.status import FailedJob, VariantStatus
from modelpress.api.steps import Variant
from modelpress.plan import names
from modelpress.plan.observed import JobState, Owner
from modelpress.plan.outcome import VariantPlan
from modelpress.plan.progress import (
    Verdict,
    compressing,
    failed_with_other_settings,
    job_progress,
    rerun,
)


def plan_job(
    owner: Owner,
    variant: Variant,
    key: str,
    uri: str,
    job: dict[str, Any],
    existing: JobState | None,
    earlier: VariantStatus | None,
    pod_message: str | None,
) -> VariantPlan:
    """The Job of a variant whose artifact is not in the store."""
    job_name = job["metadata"]["name"]
    purpose = compressing(variant.name)
    remembered = earlier.failed_job if earlier is not None else None
    if remembered is not None and remembered.name != job_name:
        remembered = None  # a failure of another recipe
    if failed_with_other_settings(existing, job) or (
        existing is not None
        and existing.finished
        and remembered
        and remembered.retry != owner.retry
    ):
        return VariantPlan(variant, rerun(job_name, purpose), key, uri, stale_job=job_name)
    if existing is not None and existing.complete and _was_published(earlier, key):
        # Removed after it was published (a repair, a deletion): computed again, not an error.
        message = f"artifact {uri} was removed after it was published; computing it again"
        return VariantPlan(variant, Verdict(purpose.working, message), key, uri, stale_job=job_name)
    still_failed = (
        existing is None
        and remembered is not None
        and remembered.settings == names.spec_hash(job)
        and remembered.retry == owner.retry
    )
    if still_failed and remembered is not None:
        return VariantPlan(variant, _remembered(owner, remembered), key, uri, failed_job=remembered)
    verdict = job_progress(existing, job_name, pod_message, purpose)
    failed = None
    if existing is not None and existing.finished:  # failed, or succeeded without a result
        failed = FailedJob(
            name=job_name,
            settings=existing.spec_hash,
            retry=owner.retry,
            reason=verdict.reason,
            message=verdict.message,
        )
    return VariantPlan(
        variant,
        verdict,
        key,
        uri,
        job_name=job_name,
        job=job if existing is None else None,
        failed_job=failed,
    )


def _was_published(earlier: VariantStatus | None, key: str) -> bool:
    if earlier is None or earlier.key != key:
        return False
    compressed = next((c for c in earlier.conditions if c.type == ConditionType.COMPRESSED), None)
    return compressed is not None and compressed.reason == Reason.PUBLISHED


def _remembered(owner: Owner, failure: FailedJob) -> Verdict:
    """A failed Job removed by its TTL: the failure stands until something changes."""
    reason = parse_reason(failure.reason) or Reason.JOB_FAILED
    return Verdict(
        reason,
        f"{failure.message}; it is not run again until the recipe or its settings change, "
        f"or `kubectl annotate compressedmodel {owner.name} {names.ANNOTATION_RETRY}="
        "$(date +%s) --overwrite`",
    )
