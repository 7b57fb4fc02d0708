"""How far a Job that should produce something has come: a verdict with a reason and
a message, in the words of the thing it produces (a base model or a variant)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpress.api.reasons import Reason
from modelpress.plan import names
from modelpress.plan.observed import JobState


@dataclass(frozen=True)
class Verdict:
    """(reason, message) of one check; whether it failed is the reason's severity."""

    reason: Reason
    message: str

    @property
    def failed(self) -> bool:
        return self.reason.failed


@dataclass(frozen=True)
class JobPurpose:
    """What a Job is for, and the reasons its states are reported with."""

    verb: str
    """What the Job does, for messages: "fetch", "compress w4"."""
    working: Reason
    failed: Reason
    missing: Reason
    """The Job succeeded but its result is not in the store."""
    memory_field: str = "spec.compression.memory"
    """Where its memory is set, for an out-of-memory failure's message."""


def fetching() -> JobPurpose:
    return JobPurpose(
        "fetch",
        Reason.FETCHING,
        Reason.FETCH_FAILED,
        Reason.FETCH_INCOMPLETE,
        "the operator's jobs.fetchMemory (Helm values)",
    )


def compressing(variant: str) -> JobPurpose:
    return JobPurpose(
        f"compress {variant}", Reason.COMPRESSING, Reason.JOB_FAILED, Reason.PUBLISH_MISSING
    )


def _job_failure(job: JobState, pod_message: str | None) -> str:
    text = f"Job {job.name} failed"
    if job.failure_reason:
        text += f" ({job.failure_reason}"
        if job.failure_message:
            text += f": {job.failure_message}"
        text += ")"
    if pod_message:
        text += f": {pod_message}"
    return text


def _attempts(job: JobState) -> str:
    limit = job.backoff_limit if job.backoff_limit is not None else 0
    return f"{job.failed} of {limit + 1} attempts failed"


def failed_with_other_settings(job: JobState | None, desired: dict[str, Any]) -> bool:
    """A failed Job whose settings (resources, retries, image...) have changed since: it is
    replaced, so the change takes effect. A running Job is never replaced for them."""
    wanted = names.spec_hash(desired)
    return job is not None and job.is_failed and bool(job.spec_hash) and job.spec_hash != wanted


def rerun(job_name: str, purpose: JobPurpose) -> Verdict:
    return Verdict(
        purpose.working,
        f"Job {job_name} failed with other settings; it runs again with the current ones",
    )


OUT_OF_MEMORY_SIGNS = ("OOMKilled", "exit code 137", "out of memory", "OutOfMemory")
CUDA_SIGNS = ("CUDA out of memory", "CUDA error: out of memory")


def _out_of_memory(job: JobState, pod_message: str, purpose: JobPurpose) -> Verdict:
    if any(sign in pod_message for sign in CUDA_SIGNS):
        advice = (
            "give it more GPU memory (a larger spec.compression.gpu product or count) or fewer "
            "calibration samples"
        )
    else:
        limit = f" above {job.memory_limit}" if job.memory_limit else ""
        advice = f"raise {purpose.memory_field}{limit}"
    return Verdict(
        Reason.OUT_OF_MEMORY,
        f"Job {job.name} ran out of memory ({pod_message}): {advice}; it runs again once "
        "that is changed",
    )


def job_progress(
    job: JobState | None, job_name: str, pod_message: str | None, purpose: JobPurpose
) -> Verdict:
    """The state of a Job whose result is not in the store yet."""
    if job is None:
        return Verdict(purpose.working, f"created Job {job_name} to {purpose.verb}")
    if job.is_failed:
        if pod_message and any(sign in pod_message for sign in OUT_OF_MEMORY_SIGNS):
            return _out_of_memory(job, pod_message, purpose)
        return Verdict(purpose.failed, _job_failure(job, pod_message))
    if job.complete:
        return Verdict(
            purpose.missing,
            f"Job {job.name} succeeded but its result is not in the store: check that the Job "
            "and the operator see the same store (storage.uri, AWS_ENDPOINT_URL)",
        )
    if job.failed:
        detail = f": {pod_message}" if pod_message else ""
        return Verdict(Reason.JOB_RETRYING, f"Job {job.name}: {_attempts(job)}{detail}; retrying")
    if job.active and job.ready is not None and not job.ready:
        why = f": {pod_message}" if pod_message else ""
        return Verdict(purpose.working, f"Job {job.name} is waiting for its pod to start{why}")
    state = "running" if job.active else "pending"
    return Verdict(purpose.working, f"Job {job.name} is {state}")
