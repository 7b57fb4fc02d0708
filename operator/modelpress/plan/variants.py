"""Each variant: its Job or its artifact, its gate verdict and fit, its status entry,
and VariantsReady over all of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelpress.api.reasons import ConditionType, Reason, parse_reason
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import Condition, FailedJob, VariantStatus
from modelpress.api.steps import Variant
from modelpress.config import OperatorConfig
from modelpress.plan import jobs, names
from modelpress.plan.conditions import condition
from modelpress.plan.fit import Fit, footprint, size_artifact
from modelpress.plan.observed import Artifact, JobState, Observed, Owner
from modelpress.plan.preflight import recipe_problem
from modelpress.plan.progress import (
    Verdict,
    compressing,
    failed_with_other_settings,
    job_progress,
    rerun,
)
from modelpress.plan.recipes import Candidate, gate
from modelpress.plan.resources import compression_resources
from modelpress.plan.trust import image_problem


@dataclass(frozen=True)
class VariantPlan:
    """What the planner decided about one variant."""

    variant: Variant
    compressed: Verdict
    """Published once the artifact exists; else why not yet (or why never)."""
    key: str | None = None
    uri: str | None = None
    artifact: Artifact | None = None
    job_name: str | None = None
    """The variant's Job, to keep (and to create when `job` is set)."""
    job: dict[str, Any] | None = None
    """The Job to create: not seen yet and the artifact is missing."""
    stale_job: str | None = None
    """A failed Job of this variant with other settings, to delete so it runs again."""
    failed_job: FailedJob | None = None
    """The failure to remember once the Job is gone (see `api.status.FailedJob`)."""
    fit: Fit | None = None
    gate: Verdict | None = None

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def blocked(self) -> bool:
        """The variant cannot be built as specified (a failed Job, a GPU that cannot hold it)."""
        return self.artifact is None and self.compressed.failed

    @property
    def passed(self) -> bool:
        return self.gate is not None and self.gate.reason is Reason.PASSED


def waiting_for_source(variant: Variant) -> VariantPlan:
    return VariantPlan(
        variant, Verdict(Reason.WAITING_FOR_SOURCE, "waiting for the base model (SourceReady)")
    )


def plan_variant(
    owner: Owner,
    spec: CompressedModelSpec,
    variant: Variant,
    location: tuple[str, str],
    observed: Observed,
    base: Artifact,
    owned_jobs: Mapping[str, JobState],
    config: OperatorConfig,
    earlier: VariantStatus | None = None,
) -> VariantPlan:
    key, uri = location
    assert observed.source is not None
    sized = compression_resources(spec, variant, base.weights_bytes, base.config, config)
    job = jobs.compress_job(
        owner.name, owner.namespace, spec, variant, key, observed.source.uri, uri, sized, config
    )
    job_name = job["metadata"]["name"]
    if key in observed.corrupt_artifacts:
        message = (
            f"{observed.corrupt_artifacts[key]}; the other variants go on. To repair: "
            f"`modelpress verify {uri} --repair` removes the unreadable manifest, and the "
            "variant is computed again"
        )
        return VariantPlan(variant, Verdict(Reason.ARTIFACT_CORRUPT, message), key, uri)
    artifact = observed.artifacts.get(key)
    if artifact is not None:
        message = f"artifact {uri} holds {artifact.total_bytes} bytes"
        return VariantPlan(
            variant,
            Verdict(Reason.PUBLISHED, message),
            key,
            uri,
            artifact,
            job_name=job_name if job_name in owned_jobs else None,
            fit=size_artifact(spec, artifact, base, config),
            gate=gate(spec.evaluation, artifact.metrics),
        )
    problem = (
        image_problem("spec.compression.image", spec.compression.image, config.trust)
        or recipe_problem(spec, variant, base.config)
        or sized.problem
    )
    if problem is not None:
        return VariantPlan(variant, problem, key, uri)
    existing = owned_jobs.get(job_name)
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
        and remembered.settings == _settings(job)
        and remembered.retry == owner.retry
    )
    if still_failed and remembered is not None:
        return VariantPlan(variant, _remembered(owner, remembered), key, uri, failed_job=remembered)
    verdict = job_progress(existing, job_name, observed.job_messages.get(job_name), purpose)
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


def _settings(job: Mapping[str, Any]) -> str | None:
    return job["metadata"]["annotations"].get(names.ANNOTATION_SPEC_HASH)


def _remembered(owner: Owner, failure: FailedJob) -> Verdict:
    """A failed Job removed by its TTL: the failure stands until something changes."""
    reason = parse_reason(failure.reason) or Reason.JOB_FAILED
    return Verdict(
        reason,
        f"{failure.message}; it is not run again until the recipe or its settings change, "
        f"or `kubectl annotate compressedmodel {owner.name} {names.ANNOTATION_RETRY}="
        "$(date +%s) --overwrite`",
    )


def variant_status(
    outcome: VariantPlan, base: Artifact | None, generation: int | None
) -> VariantStatus:
    def make(type_: ConditionType, status: bool | None, verdict: Verdict) -> Condition:
        return condition(type_, status, verdict.reason, verdict.message, generation)

    entry = VariantStatus(
        name=outcome.name,
        key=outcome.key,
        job=outcome.job_name,
        artifact_uri=outcome.uri,
        failed_job=outcome.failed_job,
    )
    artifact = outcome.artifact
    if artifact is None or outcome.fit is None or outcome.gate is None:
        not_built = "not built yet"
        entry.conditions = [
            make(ConditionType.READY, False, outcome.compressed),
            make(ConditionType.COMPRESSED, False, outcome.compressed),
            make(ConditionType.QUALITY_GATE, None, Verdict(Reason.NOT_EVALUATED, not_built)),
            make(ConditionType.FITS, None, Verdict(Reason.NOT_SIZED, not_built)),
        ]
        return entry

    metadata = artifact.metadata
    entry.bytes = artifact.total_bytes
    if base is not None and base.total_bytes:
        entry.size_ratio = round(artifact.total_bytes / base.total_bytes, 4)
    entry.parameters = metadata.parameters
    entry.bits_per_weight = metadata.bits_per_weight
    if artifact.metrics is not None and artifact.metrics.to_wire():
        entry.metrics = artifact.metrics
    if outcome.fit.sizing is not None:
        entry.footprint = footprint(outcome.fit.sizing)
    if outcome.passed and outcome.fit.fits:
        ready = Verdict(Reason.READY, "built, passes the quality gate and fits")
    else:
        ready = outcome.fit.verdict if outcome.passed else outcome.gate
    entry.conditions = [
        make(ConditionType.READY, outcome.passed and outcome.fit.fits, ready),
        make(ConditionType.COMPRESSED, True, outcome.compressed),
        make(ConditionType.QUALITY_GATE, outcome.passed, outcome.gate),
        make(ConditionType.FITS, outcome.fit.fits, outcome.fit.verdict),
    ]
    return entry


def candidate(outcome: VariantPlan) -> Candidate:
    """What choosing the served variant needs to know about this one."""
    if outcome.artifact is None or outcome.fit is None or outcome.gate is None:
        failed = outcome.compressed.message if outcome.blocked else None
        return Candidate(name=outcome.name, failed=failed)
    return Candidate(
        name=outcome.name,
        bytes=outcome.artifact.total_bytes,
        passed=outcome.passed,
        gate_message=outcome.gate.message,
        fits=outcome.fit.fits,
        fit_message=outcome.fit.verdict.message,
    )


def variants_ready(
    outcomes: Sequence[VariantPlan], source_ready: bool, generation: int | None
) -> Condition:
    def make(status: bool, reason: Reason, message: str) -> Condition:
        return condition(ConditionType.VARIANTS_READY, status, reason, message, generation)

    total = len(outcomes)
    if not source_ready:
        return make(False, Reason.WAITING_FOR_SOURCE, "waiting for the base model")
    blocked = [o for o in outcomes if o.blocked]
    if blocked:
        message = "; ".join(f"{o.name}: {o.compressed.message}" for o in blocked)
        return make(False, blocked[0].compressed.reason, message)
    built = [o for o in outcomes if o.artifact is not None]
    if len(built) < total:
        pending = [o.name for o in outcomes if o.artifact is None]
        retrying = [o for o in outcomes if o.compressed.reason is Reason.JOB_RETRYING]
        message = f"{len(built)}/{total} built; compressing {', '.join(pending)}"
        if retrying:
            message += "; " + "; ".join(f"{o.name}: {o.compressed.message}" for o in retrying)
            return make(False, Reason.JOB_RETRYING, message)
        return make(False, Reason.COMPRESSING, message)
    passing = sum(1 for o in outcomes if o.passed)
    message = f"{total}/{total} built and evaluated; {passing} pass the quality gate"
    return make(True, Reason.BUILT, message)
