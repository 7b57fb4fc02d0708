"""Each variant: its Job or its artifact, its gate verdict and fit, its status entry,
and VariantsReady over all of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelpress.api.reasons import ConditionType, Reason
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import Condition, VariantStatus
from modelpress.api.steps import Variant
from modelpress.config import OperatorConfig
from modelpress.plan import jobs
from modelpress.plan.conditions import condition
from modelpress.plan.fit import footprint, size_artifact
from modelpress.plan.gate import gate
from modelpress.plan.jobset import JOBSET_KIND
from modelpress.plan.lifecycle import plan_job
from modelpress.plan.observed import Artifact, JobState, Observed, Owner
from modelpress.plan.outcome import VariantPlan
from modelpress.plan.preflight import recipe_problem
from modelpress.plan.progress import (
    Verdict,
)
from modelpress.plan.recipes import Candidate
from modelpress.plan.resources import compression_resources
from modelpress.plan.trust import image_problem


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
        owner.name, owner.namespace, spec, variant, key, observed.source.uri, uri, sized, config,
        jobset=JOBSET_KIND not in observed.missing_kinds,
    )  # fmt: skip
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
    return plan_job(
        owner,
        variant,
        key,
        uri,
        job,
        owned_jobs.get(job_name),
        earlier,
        observed.job_messages.get(job_name),
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
        fit_reason=outcome.fit.verdict.reason,
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
