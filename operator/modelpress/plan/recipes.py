"""What to run and what to serve, derived from the spec alone: recipes, keys, Job
arguments and the choice of the served variant (`plan.gate` judges each one).

Pure functions, shared by the operator and local mode (`modelpress run`), so that
both compute the same content keys, run the same commands and serve the same
variant for the same spec.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelpress.api.keys import variant_key
from modelpress.api.reasons import Reason
from modelpress.api.spec import CompressedModelSpec, step_calibration
from modelpress.api.steps import Step, Variant
from modelpress.config import OperatorConfig
from modelpress.plan.observed import SourceRecord


def _resolved_action(spec: CompressedModelSpec, step: Step) -> dict[str, Any]:
    action = step.action.to_wire()
    if step.quantize is not None:
        # Written out, so the Job runs what the key names, whatever the default.
        action["algorithm"] = step.quantize.effective_algorithm
    calibration = step_calibration(spec, step)
    if step.needs_data and calibration is not None:
        action["calibration"] = calibration.to_wire()
    return action


def resolved_variant(spec: CompressedModelSpec, variant: Variant) -> dict[str, Any]:
    """The variant's wire JSON as the compression Job receives it.

    Every step that learns from data carries its calibration (its own, else
    spec.calibration) so the Job needs nothing else from the spec; steps that
    need no data (rtn quantization) carry none, so a new default calibration
    does not recompute them. The shape (single action or `steps`) is kept.
    """
    wire: dict[str, Any] = {"name": variant.name}
    if variant.steps is not None:
        wire["steps"] = [{step.kind: _resolved_action(spec, step)} for step in variant.steps]
    else:
        step = variant.chain[0]
        wire[step.kind] = _resolved_action(spec, step)
    return wire


def store_prefix(spec: CompressedModelSpec) -> str:
    """The storage root, always ending with '/'."""
    uri = spec.storage.uri
    return uri if uri.endswith("/") else uri + "/"


def artifact_uri(spec: CompressedModelSpec, key: str) -> str:
    """Where the artifact with content key `key` lives: `<storage.uri>/artifacts/<key>/`."""
    return f"{store_prefix(spec)}artifacts/{key}/"


def evaluations_uri(spec: CompressedModelSpec) -> str:
    """Where base models' evaluation references live: `<storage.uri>/evaluations/<key>/`."""
    return f"{store_prefix(spec)}evaluations/"


def checkpoint_uri(artifact: str) -> str:
    """Where a variant's distillation checkpoints live: beside its artifact
    (`<storage.uri>/artifacts/<key>/`), under `<storage.uri>/checkpoints/<key>/`, so a
    rescheduled pod resumes training."""
    head, _, key = artifact.rstrip("/").rpartition("/artifacts/")
    return f"{head}/checkpoints/{key}/"


def variant_artifact(
    spec: CompressedModelSpec, base_key: str, variant: Variant, compressor_version: str
) -> tuple[str, str]:
    """(content key, artifact URI) of a variant built from the base model `base_key`.

    The key covers the base model, the resolved recipe (calibration included), the
    evaluation settings and the compressor version; not the variant's name.
    """
    key = variant_key(
        base_key, resolved_variant(spec, variant), spec.evaluation.measurement(), compressor_version
    )
    return key, artifact_uri(spec, key)


def compressor_version(spec: CompressedModelSpec, config: OperatorConfig) -> str:
    """What computes the artifacts: a custom image is its own version."""
    return spec.compression.image or config.compressor_version


def variant_locations(
    spec: CompressedModelSpec, source: SourceRecord, config: OperatorConfig
) -> dict[str, tuple[str, str]]:
    """Variant name -> (content key, artifact URI), once the base model is known."""
    version = compressor_version(spec, config)
    return {v.name: variant_artifact(spec, source.key, v, version) for v in spec.variants}


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def source_job_args(spec: CompressedModelSpec, work_dir: str | None = None) -> list[str]:
    """Arguments after `modelpress` for the Job that fetches the base model once.
    `work_dir` is scratch space for the download (default: the system temp dir)."""
    args = [
        "fetch",
        "--source", _compact(spec.source.to_wire()),
        "--store", store_prefix(spec),
    ]  # fmt: skip
    if work_dir:
        args += ["--work-dir", work_dir]
    return args


def compress_job_args(
    spec: CompressedModelSpec,
    variant: Variant,
    base_uri: str,
    out_uri: str,
    work_dir: str | None = None,
) -> list[str]:
    """Arguments after `modelpress` for one variant's Job: its whole chain, then the
    evaluation, then the publish, all in one process. `work_dir` is scratch space. The
    base model's scores on the evaluation text are kept in the store
    (`<storage.uri>/evaluations/`), so only the first Job of a base evaluates it."""
    args = [
        "compress",
        "--base", base_uri,
        "--variant", _compact(resolved_variant(spec, variant)),
        "--evaluation", _compact(spec.evaluation.measurement()),
        "--out", out_uri,
        "--cache-dir", evaluations_uri(spec),
    ]  # fmt: skip
    if work_dir:
        args += ["--work-dir", work_dir]
    if any(step.distill is not None for step in variant.chain):
        args += ["--checkpoint-dir", checkpoint_uri(out_uri)]
    return args


# --- choosing the served variant --------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """What is known about one variant when choosing what to serve.

    A candidate is settled once it failed, or once its artifact, gate verdict and
    sizing are all known; until then `auto` waits rather than roll out twice.
    """

    name: str
    bytes: int | None = None
    """Artifact bytes; None until the artifact is published."""
    passed: bool | None = None
    """Quality gate verdict; None until evaluated."""
    gate_message: str = ""
    fits: bool | None = None
    """Sizing verdict for the serving settings; None until sized."""
    fit_message: str = ""
    fit_reason: Reason = Reason.DOES_NOT_FIT
    """Why it does not fit (no room, no CPU kernel, not sizable), for the Serving reason."""
    failed: str | None = None
    """Why the variant cannot be built (a failed Job, a bad recipe); None otherwise."""

    @property
    def settled(self) -> bool:
        return self.failed is not None or (
            self.bytes is not None and self.passed is not None and self.fits is not None
        )

    @property
    def servable(self) -> bool:
        return self.failed is None and self.bytes is not None and bool(self.passed and self.fits)


@dataclass(frozen=True)
class Choice:
    """The verdict of `choose_variant`.

    `variant` is the variant to serve, or None. When `decided` is False the choice
    is still open (variants are being built): keep serving whatever is served.
    `reason` is for the Serving condition; `message` says why.
    """

    variant: str | None
    decided: bool
    reason: Reason
    message: str


def choose_variant(spec: CompressedModelSpec, candidates: Sequence[Candidate]) -> Choice:
    """The variant to serve according to spec.serving.variant.

    - `none`: serve nothing.
    - a name: that variant, once built, if it passes the gate and fits.
    - `auto`: once every variant is settled, the smallest servable one (artifact
      bytes, then name); none qualifying is reported with each one's reason.

    A named or chosen variant that is blocked leaves `variant` None with
    `decided` True: the caller keeps the previous Deployment serving.
    """
    wanted = spec.serving.variant
    if wanted == "none":
        return Choice(
            None, True, Reason.SERVING_DISABLED, "serving.variant is none: nothing is served"
        )
    by_name = {c.name: c for c in candidates}
    if wanted != "auto":
        candidate = by_name.get(wanted)
        if candidate is None:
            return Choice(
                None, True, Reason.UNKNOWN_VARIANT, f"serving.variant {wanted!r} names no variant"
            )
        return _named(candidate)
    pending = [c.name for c in candidates if not c.settled]
    if pending:
        return Choice(
            None,
            False,
            Reason.WAITING_FOR_VARIANTS,
            f"auto chooses once every variant is built and evaluated; waiting for "
            f"{', '.join(pending)}",
        )
    servable = sorted((c for c in candidates if c.servable), key=lambda c: (c.bytes, c.name))
    if servable:
        best = servable[0]
        others = len(servable) - 1
        return Choice(
            best.name,
            True,
            Reason.SMALLEST_QUALIFYING,
            f"{best.name} is the smallest variant that passes the quality gate and fits "
            f"({best.bytes} bytes" + (f"; {others} other(s) qualify" if others else "") + ")",
        )
    reasons = "; ".join(f"{c.name}: {_blocker(c)}" for c in candidates)
    return Choice(
        None, True, Reason.NO_VARIANT_QUALIFIES, f"no variant qualifies for serving: {reasons}"
    )


def _named(candidate: Candidate) -> Choice:
    name = candidate.name
    if candidate.failed is not None:
        return Choice(
            None, True, Reason.VARIANT_FAILED, f"{name} could not be built: {candidate.failed}"
        )
    if candidate.bytes is None or candidate.passed is None:
        return Choice(
            None, False, Reason.WAITING_FOR_VARIANT, f"waiting for {name} to be built and evaluated"
        )
    if not candidate.passed:
        return Choice(
            None,
            True,
            Reason.QUALITY_GATE_FAILED,
            f"{name} is not served: {candidate.gate_message}",
        )
    if candidate.fits is None:
        return Choice(None, False, Reason.WAITING_FOR_SIZING, f"waiting for {name} to be sized")
    if not candidate.fits:
        return Choice(
            None, True, candidate.fit_reason, f"{name} is not served: {candidate.fit_message}"
        )
    return Choice(name, True, Reason.CHOSEN, f"{name} is named by serving.variant")


def _blocker(candidate: Candidate) -> str:
    if candidate.failed is not None:
        return f"failed ({candidate.failed})"
    if not candidate.passed:
        return f"quality gate failed ({candidate.gate_message})"
    return f"does not fit ({candidate.fit_message})"
