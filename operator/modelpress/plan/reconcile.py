"""The planner: (spec, observed children, artifacts in the store) -> desired children
and the status to report.

One pure function, `plan_model`, decides everything; the kopf handlers only
read the world, call it, and apply its answer. Children have deterministic
names, so applying the same answer twice changes nothing, and nothing is
deleted unless the planner is sure it is obsolete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modelpress.api.spec import CompressedModelSpec, Variant
from modelpress.config import OperatorConfig
from modelpress.plan import conditions as cond
from modelpress.plan import jobs, names, serving
from modelpress.plan.conditions import Event
from modelpress.plan.observed import Artifact, JobState, Observed, SourceRecord
from modelpress.plan.recipes import Candidate, Choice, choose_variant, gate, variant_artifact
from modelpress.plan.resources import compression_resources, shape_of
from modelpress.sizing import ServingSettings, SizingError, SizingResult, size_variant

READY = "Ready"
SOURCE_READY = "SourceReady"
VARIANTS_READY = "VariantsReady"
SERVING = "Serving"
COMPRESSED = "Compressed"
QUALITY_GATE = "QualityGate"
FITS = "Fits"


@dataclass(frozen=True)
class Owner:
    """The CompressedModel being reconciled."""

    name: str
    namespace: str
    uid: str | None = None
    generation: int | None = None


@dataclass
class Plan:
    """What to change and what to report. Children are plain dicts without owner
    references; the caller adopts them."""

    create: list[dict[str, Any]] = field(default_factory=list)
    """Children not seen yet. A Job found to exist is already right (its name hashes its
    spec); a Deployment or Service found to exist is applied instead."""
    apply: list[dict[str, Any]] = field(default_factory=list)
    """Deployment and Service seen with another spec: update them to exactly this."""
    delete: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) of children that are obsolete."""
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


def compressor_version(spec: CompressedModelSpec, config: OperatorConfig) -> str:
    """What computes the artifacts: a custom image is its own version."""
    return spec.compression.image or config.compressor_version


def variant_locations(
    spec: CompressedModelSpec, source: SourceRecord, config: OperatorConfig
) -> dict[str, tuple[str, str]]:
    """Variant name -> (content key, artifact URI), once the base model is known."""
    version = compressor_version(spec, config)
    return {v.name: variant_artifact(spec, source.key, v, version) for v in spec.variants}


def spec_problems(
    raw_spec: Mapping[str, Any] | None,
) -> tuple[CompressedModelSpec | None, list[str]]:
    """The spec as the operator reads it, or the problems that stop it, one per field."""
    try:
        return CompressedModelSpec.model_validate(dict(raw_spec or {})), []
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(["spec", *(str(p) for p in item["loc"] if not _is_tag(p))])
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}")
        return None, problems


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


# --- per-variant outcome ------------------------------------------------------------------


@dataclass
class _VariantOutcome:
    variant: Variant
    key: str | None = None
    uri: str | None = None
    artifact: Artifact | None = None
    sizing: SizingResult | None = None
    job_name: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    candidate: Candidate | None = None
    blocked_reason: str | None = None
    """A failure reason from building this variant (JobFailed, CompressionDoesNotFit...)."""
    compressed_reason: str = "WaitingForSource"
    compressed_message: str = ""
    job_object: dict[str, Any] | None = None
    fit_condition: dict[str, Any] = field(default_factory=dict)
    gate_result: tuple[bool, str] = (False, "")


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


def _job_progress(
    job: JobState | None, job_name: str, pod_message: str | None, what: str
) -> tuple[str, str, bool]:
    """(reason, message, failed) for a Job that should produce something not yet there."""
    if job is None:
        return "JobCreated", f"created Job {job_name} to {what}", False
    if job.is_failed:
        return "JobFailed", _job_failure(job, pod_message), True
    if job.complete:
        return (
            "PublishMissing",
            f"Job {job.name} succeeded but its result is not in the store: check that the Job "
            "and the operator see the same store (storage.uri, AWS_ENDPOINT_URL)",
            True,
        )
    if job.failed:
        detail = f": {pod_message}" if pod_message else ""
        return "JobRetrying", f"Job {job.name}: {_attempts(job)}{detail}; retrying", False
    state = "running" if job.active else "pending"
    return "Compressing" if what != "fetch" else "Fetching", f"Job {job.name} is {state}", False


def _serving_settings(spec: CompressedModelSpec) -> ServingSettings:
    s = spec.serving
    return ServingSettings(
        max_model_len=s.max_model_len,
        max_num_seqs=s.max_num_seqs,
        kv_cache_dtype=s.kv_cache_dtype,
        gpu_memory_utilization=s.gpu_memory_utilization,
    )


def serving_target(spec: CompressedModelSpec) -> str:
    return spec.serving.gpu.product if spec.serving.gpu else "cpu"


def unknown_serving_gpu(spec: CompressedModelSpec, config: OperatorConfig) -> str | None:
    """Why spec.serving.gpu names nothing the operator can place, or None."""
    if spec.serving.gpu is None:
        return None
    product = spec.serving.gpu.product
    target = config.catalog.get(product)
    if target is not None and target.kind == "gpu":
        return None
    known = ", ".join(sorted(n for n, t in config.catalog.items() if t.kind == "gpu"))
    return (
        f"spec.serving.gpu.product {product!r} is not in the operator's GPU catalog; use one "
        f"of {known}, or add it to the operator's gpuCatalog (or remove serving.gpu to serve "
        "on CPU)"
    )


def size_artifact(
    spec: CompressedModelSpec, artifact: Artifact, base: Artifact | None, config: OperatorConfig
) -> tuple[SizingResult | None, dict[str, Any]]:
    """Sizing of a built variant for the spec's serving settings, and its Fits condition
    (without generation)."""
    unknown = unknown_serving_gpu(spec, config)
    if unknown:
        return None, cond.condition(FITS, False, "UnknownGpuProduct", unknown, None)
    shape = shape_of(artifact.config) or shape_of(base.config if base else None)
    if shape is None:
        message = (
            "cannot size the variant: neither its manifest (metadata.modelConfig) nor the base "
            "model has a usable config.json"
        )
        return None, cond.condition(FITS, False, "SizingFailed", message, None)
    gpu = spec.serving.gpu
    try:
        result = size_variant(
            shape,
            artifact.weights_bytes,
            _serving_settings(spec),
            serving_target(spec),
            catalog=config.catalog,
            allow_cpu_offload=spec.serving.allow_cpu_offload,
            gpu_count=gpu.count if gpu else None,
        )
    except SizingError as error:
        return None, cond.condition(FITS, False, "SizingFailed", f"spec.serving: {error}", None)
    if result.fits:
        return result, cond.condition(FITS, True, "Fits", result.reason, None)
    return result, cond.condition(FITS, False, "DoesNotFit", result.reason, None)


def _footprint(sizing: SizingResult) -> dict[str, Any]:
    return {
        "weightsBytes": sizing.weights_bytes,
        "kvCacheBytes": sizing.kv_cache_bytes,
        "overheadBytes": sizing.overhead_bytes,
        "totalBytes": sizing.total_bytes,
        "gpus": sizing.gpus,
        "fits": sizing.fits,
        "cpuOffloadGb": float(sizing.cpu_offload_gb),
    }


def _metrics_status(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not metrics:
        return None
    keys = ("perplexity", "basePerplexity", "perplexityIncrease", "agreement")
    found = {k: float(metrics[k]) for k in keys if isinstance(metrics.get(k), int | float)}
    return found or None


def _with_generation(item: dict[str, Any], generation: int | None) -> dict[str, Any]:
    if generation is not None:
        item = {**item, "observedGeneration": generation}
    return item


# --- the planner ---------------------------------------------------------------------------


def plan_model(
    owner: Owner,
    spec: CompressedModelSpec,
    observed: Observed,
    config: OperatorConfig,
    previous_status: Mapping[str, Any] | None,
    now: str,
) -> Plan:
    """Decide the children and the status of one CompressedModel."""
    generation = owner.generation
    previous = previous_status or {}
    plan = Plan()
    owned_jobs = {j.name: j for j in observed.jobs if owner.uid is None or j.owner_uid == owner.uid}

    # --- the base model ---------------------------------------------------------------
    fetch = jobs.fetch_job(owner.name, owner.namespace, spec, config)
    fetch_name = fetch["metadata"]["name"]
    source_ready = observed.source is not None and observed.base is not None
    keep_jobs: set[str] = {fetch_name}
    source_status: dict[str, Any] | None = None
    if observed.store_blocker is not None:
        blocker = observed.store_blocker
        source_condition = cond.condition(
            SOURCE_READY, False, blocker.reason, blocker.message, generation
        )
        source_status = previous.get("source")
    elif source_ready:
        assert observed.source is not None and observed.base is not None
        source_status = {
            "id": observed.source.id,
            "revision": observed.source.revision,
            "uri": observed.source.uri,
            "bytes": observed.base.total_bytes,
        }
        earlier = previous.get("source") or {}
        if fetch_name in owned_jobs:
            source_status["job"] = fetch_name
        elif earlier.get("uri") == observed.source.uri and earlier.get("job"):
            source_status["job"] = earlier["job"]
        message = (
            f"{observed.source.id} at revision {observed.source.revision} is stored at "
            f"{observed.source.uri} ({observed.base.total_bytes} bytes)"
        )
        source_condition = cond.condition(SOURCE_READY, True, "Stored", message, generation)
    elif observed.source_blocker is not None:
        blocker = observed.source_blocker
        source_condition = cond.condition(
            SOURCE_READY, False, blocker.reason, blocker.message, generation
        )
    else:
        job = owned_jobs.get(fetch_name)
        if job is None:
            plan.create.append(fetch)
        reason, message, _ = _job_progress(
            job, fetch_name, observed.job_messages.get(fetch_name), "fetch"
        )
        if reason == "JobFailed":
            reason = "FetchFailed"
        elif reason == "PublishMissing":
            reason = "FetchIncomplete"
        elif reason == "JobCreated":
            reason = "Fetching"
        source_status = {"job": fetch_name}
        source_condition = cond.condition(SOURCE_READY, False, reason, message, generation)

    # --- the variants ---------------------------------------------------------------------
    outcomes = [_VariantOutcome(variant=v) for v in spec.variants]
    base = observed.base if source_ready else None
    if source_ready:
        assert observed.source is not None and base is not None
        locations = variant_locations(spec, observed.source, config)
        for outcome in outcomes:
            _plan_variant(outcome, owner, spec, observed, base, locations, owned_jobs, config)
            if outcome.job_name:
                keep_jobs.add(outcome.job_name)
                if outcome.job_object is not None and outcome.job_name not in owned_jobs:
                    plan.create.append(outcome.job_object)
    else:
        waiting = "waiting for the base model (SourceReady)"
        for outcome in outcomes:
            outcome.compressed_reason = "WaitingForSource"
            outcome.compressed_message = waiting

    for outcome in outcomes:
        outcome.status = _variant_status(outcome, base, generation)
        outcome.candidate = _candidate(outcome)

    # --- obsolete Jobs: only when the store was read, so nothing is deleted on a guess ---
    if observed.store_blocker is None:
        for job in owned_jobs.values():
            if job.name in keep_jobs:
                continue
            if job.component == names.COMPRESS and not source_ready:
                continue  # its key is unknown until the base model is: keep it for now
            plan.delete.append(("Job", job.name))

    variants_condition = _variants_condition(outcomes, source_ready, generation)

    # --- serving ----------------------------------------------------------------------
    serving_condition, serving_status = _plan_serving(
        plan, owner, spec, observed, outcomes, base, config, generation
    )

    # --- status -----------------------------------------------------------------------
    top = [source_condition, variants_condition, serving_condition]
    ready_condition = _ready(top, generation)
    conditions = cond.stamp([ready_condition, *top], previous.get("conditions"), now)
    variants_status = []
    for outcome in outcomes:
        before: Mapping[str, Any] = next(
            (v for v in previous.get("variants") or [] if v.get("name") == outcome.variant.name),
            {},
        )
        entry = dict(outcome.status)
        entry["conditions"] = cond.stamp(entry["conditions"], before.get("conditions"), now)
        variants_status.append(entry)

    status: dict[str, Any] = {"conditions": conditions, "variants": variants_status}
    if generation is not None:
        status["observedGeneration"] = generation
    if source_status:
        status["source"] = source_status
    if serving_status:
        status["serving"] = serving_status
    status["summary"] = _summary(conditions, variants_status, serving_status, observed, base)
    plan.status = status
    plan.events = cond.transitions(previous, status)
    return plan


def _plan_variant(
    outcome: _VariantOutcome,
    owner: Owner,
    spec: CompressedModelSpec,
    observed: Observed,
    base: Artifact,
    locations: Mapping[str, tuple[str, str]],
    owned_jobs: Mapping[str, JobState],
    config: OperatorConfig,
) -> None:
    variant = outcome.variant
    key, uri = locations[variant.name]
    outcome.key, outcome.uri = key, uri
    assert observed.source is not None
    sized = compression_resources(spec, variant, base.weights_bytes, base.config, config)
    job = jobs.compress_job(
        owner.name, owner.namespace, spec, variant, key, observed.source.uri, uri, sized, config
    )
    job_name = job["metadata"]["name"]
    artifact = observed.artifacts.get(key)
    if artifact is not None:
        outcome.artifact = artifact
        outcome.compressed_reason = "Published"
        outcome.compressed_message = f"artifact {uri} holds {artifact.total_bytes} bytes"
        if job_name in owned_jobs:
            outcome.job_name = job_name
        outcome.sizing, outcome.fit_condition = size_artifact(spec, artifact, base, config)
        outcome.gate_result = gate(spec.evaluation, artifact.metrics)
        return
    if sized.problem:
        reason = "UnknownGpuProduct" if "catalog" in sized.problem else "CompressionDoesNotFit"
        outcome.compressed_reason = reason
        outcome.compressed_message = sized.problem
        outcome.blocked_reason = reason
        return
    outcome.job_name = job_name
    outcome.job_object = job
    existing = owned_jobs.get(job_name)
    reason, message, failed = _job_progress(
        existing, job_name, observed.job_messages.get(job_name), f"compress {variant.name}"
    )
    if reason == "JobCreated":
        reason = "Compressing"
    outcome.compressed_reason = reason
    outcome.compressed_message = message
    if failed:
        outcome.blocked_reason = reason


def _variant_status(
    outcome: _VariantOutcome,
    base: Artifact | None,
    generation: int | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": outcome.variant.name}
    if outcome.key:
        entry["key"] = outcome.key
    if outcome.job_name:
        entry["job"] = outcome.job_name
    if outcome.uri:
        entry["artifactUri"] = outcome.uri
    artifact = outcome.artifact
    conditions: list[dict[str, Any]] = []
    if artifact is None:
        conditions.append(
            cond.condition(
                COMPRESSED, False, outcome.compressed_reason, outcome.compressed_message, generation
            )
        )
        conditions.append(
            cond.condition(QUALITY_GATE, None, "NotEvaluated", "not built yet", generation)
        )
        conditions.append(cond.condition(FITS, None, "NotSized", "not built yet", generation))
        ready_reason, ready_message = outcome.compressed_reason, outcome.compressed_message
        conditions.insert(0, cond.condition(READY, False, ready_reason, ready_message, generation))
        entry["conditions"] = conditions
        return entry

    metadata = artifact.metadata
    entry["bytes"] = artifact.total_bytes
    if base is not None and base.total_bytes:
        entry["sizeRatio"] = round(artifact.total_bytes / base.total_bytes, 4)
    if isinstance(metadata.get("parameters"), int):
        entry["parameters"] = metadata["parameters"]
    if isinstance(metadata.get("bitsPerWeight"), int | float):
        entry["bitsPerWeight"] = float(metadata["bitsPerWeight"])
    metrics = _metrics_status(artifact.metrics)
    if metrics:
        entry["metrics"] = metrics
    if outcome.sizing is not None:
        entry["footprint"] = _footprint(outcome.sizing)
    conditions.append(
        cond.condition(COMPRESSED, True, "Published", outcome.compressed_message, generation)
    )
    passed, gate_message = outcome.gate_result
    conditions.append(
        cond.condition(
            QUALITY_GATE,
            passed,
            "Passed" if passed else "QualityGateFailed",
            gate_message,
            generation,
        )
    )
    fit = _with_generation(outcome.fit_condition, generation)
    conditions.append(fit)
    ready = passed and fit["status"] == "True"
    if ready:
        ready_reason, ready_message = "Ready", "built, passes the quality gate and fits"
    elif not passed:
        ready_reason, ready_message = "QualityGateFailed", gate_message
    else:
        ready_reason, ready_message = fit["reason"], fit["message"]
    conditions.insert(0, cond.condition(READY, ready, ready_reason, ready_message, generation))
    entry["conditions"] = conditions
    return entry


def _candidate(outcome: _VariantOutcome) -> Candidate:
    name = outcome.variant.name
    if outcome.artifact is None:
        failed = outcome.compressed_message if outcome.blocked_reason else None
        return Candidate(name=name, failed=failed)
    passed, gate_message = outcome.gate_result
    fit = outcome.fit_condition
    return Candidate(
        name=name,
        bytes=outcome.artifact.total_bytes,
        passed=passed,
        gate_message=gate_message,
        fits=fit["status"] == "True",
        fit_message=fit["message"],
    )


def _variants_condition(
    outcomes: Sequence[_VariantOutcome], source_ready: bool, generation: int | None
) -> dict[str, Any]:
    total = len(outcomes)
    if not source_ready:
        return cond.condition(
            VARIANTS_READY, False, "WaitingForSource", "waiting for the base model", generation
        )
    built = [o for o in outcomes if o.artifact is not None]
    blocked = [o for o in outcomes if o.artifact is None and o.blocked_reason]
    if blocked:
        first = blocked[0].blocked_reason or "JobFailed"
        message = "; ".join(f"{o.variant.name}: {o.compressed_message}" for o in blocked)
        return cond.condition(VARIANTS_READY, False, first, message, generation)
    if len(built) < total:
        pending = [o.variant.name for o in outcomes if o.artifact is None]
        retrying = [o for o in outcomes if o.compressed_reason == "JobRetrying"]
        reason = "JobRetrying" if retrying else "Compressing"
        message = f"{len(built)}/{total} built; compressing {', '.join(pending)}"
        if retrying:
            message += "; " + "; ".join(
                f"{o.variant.name}: {o.compressed_message}" for o in retrying
            )
        return cond.condition(VARIANTS_READY, False, reason, message, generation)
    passing = sum(1 for o in outcomes if o.gate_result[0])
    message = f"{total}/{total} built and evaluated; {passing} pass the quality gate"
    return cond.condition(VARIANTS_READY, True, "Built", message, generation)


def _plan_serving(
    plan: Plan,
    owner: Owner,
    spec: CompressedModelSpec,
    observed: Observed,
    outcomes: Sequence[_VariantOutcome],
    base: Artifact | None,
    config: OperatorConfig,
    generation: int | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    current = observed.deployment
    if current is not None and owner.uid is not None and current.owner_uid not in (None, owner.uid):
        current = None  # a leftover of an earlier object with the same name
    endpoint = serving.endpoint(owner.name, owner.namespace)
    unknown = unknown_serving_gpu(spec, config)
    if unknown and spec.serving.variant != "none":
        choice = Choice(None, True, "UnknownGpuProduct", unknown)
    else:
        choice = choose_variant(spec, [o.candidate for o in outcomes if o.candidate])

    if choice.variant is not None:
        chosen = next(o for o in outcomes if o.variant.name == choice.variant)
        assert chosen.artifact is not None and chosen.sizing is not None and chosen.key
        assert chosen.uri is not None
        desired = serving.deployment(
            owner.name,
            owner.namespace,
            spec,
            chosen.variant.name,
            chosen.key,
            chosen.uri,
            chosen.artifact.total_bytes,
            chosen.sizing,
            config,
        )
        svc = serving.service(owner.name, owner.namespace)
        desired_hash = desired["metadata"]["annotations"][names.ANNOTATION_SPEC_HASH]
        up_to_date = current is not None and current.spec_hash == desired_hash
        if current is None:
            plan.create.append(desired)
        elif not up_to_date:
            plan.apply.append(desired)
        service_hash = svc["metadata"]["annotations"][names.ANNOTATION_SPEC_HASH]
        if observed.service is None:
            plan.create.append(svc)
        elif observed.service.spec_hash != service_hash:
            plan.apply.append(svc)
        strategy = desired["spec"]["strategy"]["type"]
        replicas = spec.serving.replicas
        status = {
            "variant": chosen.variant.name,
            "deployment": desired["metadata"]["name"],
            "endpoint": endpoint,
            "gpus": chosen.sizing.gpus,
            "strategy": strategy,
            "replicas": replicas,
            "readyReplicas": current.ready_replicas if current else 0,
        }
        if up_to_date and current is not None and current.rolled_out:
            message = (
                f"{chosen.variant.name} serves at {endpoint} ({current.ready_replicas}/"
                f"{replicas} replicas ready, {strategy})"
            )
            return cond.condition(SERVING, True, "Available", message, generation), status
        if up_to_date and current is not None and current.stalled_message:
            message = f"the rollout of {chosen.variant.name} stalled: {current.stalled_message}"
            return cond.condition(SERVING, False, "RolloutStalled", message, generation), status
        ready = current.ready_replicas if current else 0
        message = (
            f"rolling out {chosen.variant.name} ({strategy}): {ready}/{replicas} replicas ready; "
            f"{choice.message}"
        )
        return cond.condition(SERVING, False, "RollingOut", message, generation), status

    if choice.decided and choice.reason == "ServingDisabled":
        if current is not None:
            plan.delete.append(("Deployment", current.name))
        if observed.service is not None:
            plan.delete.append(("Service", observed.service.name))
        return cond.condition(SERVING, False, "ServingDisabled", choice.message, generation), None

    # Nothing new to serve: whatever serves keeps serving.
    if current is None:
        return cond.condition(SERVING, False, choice.reason, choice.message, generation), None
    status = {
        "variant": current.variant,
        "deployment": current.name,
        "endpoint": endpoint,
        "gpus": current.gpus,
        "strategy": current.strategy,
        "replicas": current.replicas,
        "readyReplicas": current.ready_replicas,
    }
    status = {k: v for k, v in status.items() if v is not None}
    keeps = f"{current.variant} keeps serving"
    if choice.decided:
        message = f"{choice.message}; {keeps}"
        return cond.condition(SERVING, False, choice.reason, message, generation), status
    if current.rolled_out:
        message = f"{current.variant} serves at {endpoint}; {choice.message}"
        return cond.condition(SERVING, True, "Available", message, generation), status
    message = f"{current.variant} is rolling out; {choice.message}"
    return cond.condition(SERVING, False, "RollingOut", message, generation), status


def _ready(top: Sequence[dict[str, Any]], generation: int | None) -> dict[str, Any]:
    for item in top:
        if item["status"] == "True":
            continue
        if item["type"] == SERVING and item["reason"] == "ServingDisabled":
            continue
        return cond.condition(READY, False, item["reason"], item["message"], generation)
    return cond.condition(
        READY, True, "Ready", "every variant is built and serving is up", generation
    )


def _phase(conditions: Sequence[Mapping[str, Any]]) -> str:
    by_type = {c["type"]: c for c in conditions}
    if any(c["status"] != "True" and c["reason"] in cond.FAILURE_REASONS for c in conditions):
        return "Failed"
    if by_type.get(READY, {}).get("status") == "True":
        return "Ready"
    if by_type.get(SOURCE_READY, {}).get("status") != "True":
        return "Pending"
    if by_type.get(VARIANTS_READY, {}).get("status") != "True":
        return "Compressing"
    return "Serving"


def _summary(
    conditions: Sequence[Mapping[str, Any]],
    variants: Sequence[Mapping[str, Any]],
    serving_status: Mapping[str, Any] | None,
    observed: Observed,
    base: Artifact | None,
) -> dict[str, Any]:
    ready = sum(1 for v in variants if cond.is_true(v.get("conditions") or [], READY))
    summary: dict[str, Any] = {"phase": _phase(conditions), "variants": f"{ready}/{len(variants)}"}
    if serving_status and serving_status.get("variant"):
        if serving_status.get("gpus") is not None:
            summary["gpus"] = serving_status["gpus"]
        served_key = observed.deployment.key if observed.deployment else None
        served = observed.artifacts.get(served_key) if served_key else None
        entry = next((v for v in variants if v["name"] == serving_status["variant"]), None)
        if served is None and entry is not None and entry.get("key"):
            served = observed.artifacts.get(entry["key"])
        if served is not None:
            if base is not None and base.total_bytes:
                summary["sizeRatio"] = round(served.total_bytes / base.total_bytes, 4)
            metrics = served.metrics or {}
            if isinstance(metrics.get("perplexityIncrease"), int | float):
                summary["perplexityIncrease"] = round(float(metrics["perplexityIncrease"]), 4)
    return summary


def plan_invalid(
    owner: Owner, problems: Sequence[str], previous_status: Mapping[str, Any] | None, now: str
) -> Plan:
    """A spec the API server accepted but the operator cannot read: say which field and
    what to change; touch no child (whatever serves keeps serving)."""
    previous = dict(previous_status or {})
    message = "; ".join(problems) or "the spec cannot be read"
    ready = cond.condition(READY, False, "InvalidSpec", message, owner.generation)
    kept = [c for c in previous.get("conditions") or [] if c.get("type") != READY]
    conditions = cond.stamp([ready], previous.get("conditions"), now) + kept
    status = {**previous, "conditions": conditions}
    if owner.generation is not None:
        status["observedGeneration"] = owner.generation
    summary = dict(previous.get("summary") or {})
    summary["phase"] = "Failed"
    status["summary"] = summary
    return Plan(status=status, events=cond.transitions(previous_status, status))
