"""The base model: is it stored, or which fetch Job brings it, and its SourceReady."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpress.api.reasons import ConditionType, Reason
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import CompressedModelStatus, Condition, SourceStatus
from modelpress.config import OperatorConfig
from modelpress.plan import jobs
from modelpress.plan.conditions import condition
from modelpress.plan.observed import Artifact, JobState, Observed, Owner
from modelpress.plan.progress import failed_with_other_settings, fetching, job_progress, rerun
from modelpress.plan.trust import image_problem, record_blocker


@dataclass(frozen=True)
class SourcePlan:
    condition: Condition
    status: SourceStatus | None
    base: Artifact | None
    """The stored base model; None until SourceReady."""
    job_name: str
    create: tuple[dict[str, Any], ...] = ()
    stale_job: str | None = None
    """A failed fetch Job with other settings, to delete so it runs again."""


def plan_source(
    owner: Owner,
    spec: CompressedModelSpec,
    observed: Observed,
    owned_jobs: dict[str, JobState],
    config: OperatorConfig,
    previous: CompressedModelStatus,
) -> SourcePlan:
    fetch = jobs.fetch_job(owner.name, owner.namespace, spec, config)
    name = fetch["metadata"]["name"]

    def ready(status: bool, reason: Reason, message: str) -> Condition:
        return condition(ConditionType.SOURCE_READY, status, reason, message, owner.generation)

    if observed.store_blocker is not None:
        blocker = observed.store_blocker
        return SourcePlan(
            ready(False, blocker.reason, blocker.message), previous.source, None, name
        )
    untrusted = record_blocker(spec, observed.source) if observed.source else None
    if untrusted is not None:
        return SourcePlan(ready(False, untrusted.reason, untrusted.message), None, None, name)
    if observed.source is not None and observed.base is not None:
        source, base = observed.source, observed.base
        earlier_job = previous.source.job if previous.source else None
        earlier_uri = previous.source.uri if previous.source else None
        if name in owned_jobs:
            job: str | None = name
        else:
            job = earlier_job if earlier_uri == source.uri else None
        status = SourceStatus(
            id=source.id, revision=source.revision, uri=source.uri, bytes=base.total_bytes, job=job
        )
        message = (
            f"{source.id} at revision {source.revision} is stored at {source.uri} "
            f"({base.total_bytes} bytes)"
        )
        return SourcePlan(ready(True, Reason.STORED, message), status, base, name)
    if observed.source_blocker is not None:
        blocker = observed.source_blocker
        return SourcePlan(ready(False, blocker.reason, blocker.message), None, None, name)
    refused = image_problem("spec.compression.image", spec.compression.image, config.trust)
    if refused is not None:
        return SourcePlan(ready(False, refused.reason, refused.message), None, None, name)
    existing = owned_jobs.get(name)
    if failed_with_other_settings(existing, fetch):
        verdict = rerun(name, fetching())
        return SourcePlan(
            ready(False, verdict.reason, verdict.message), None, None, name, stale_job=name
        )
    verdict = job_progress(existing, name, observed.job_messages.get(name), fetching())
    return SourcePlan(
        ready(False, verdict.reason, verdict.message),
        SourceStatus(job=name),
        None,
        name,
        create=(fetch,) if existing is None else (),
    )
