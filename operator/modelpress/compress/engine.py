"""`compress_variant`: base model + variant + evaluation -> a published, evaluated artifact.

The order is the point: everything that can be checked from the config, the
tokenizer and the datasets is checked first (`prepare`), so a bad request fails
in seconds; then the weights are downloaded, the steps run in order (each on the
previous one's result), the result is saved in the base dtype, reloaded from disk
and evaluated against the base model, and published with its manifest last.

Quantized results are evaluated by loading the saved compressed-tensors checkpoint
with transformers (which decompresses it), not the in-memory model: that measures
the very bytes vLLM will load, so a packing or saving mistake cannot hide.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.api import keys
from modelpress.api.inputs import Calibration
from modelpress.api.keys import content_key
from modelpress.api.spec import Evaluation
from modelpress.api.steps import DistillStep, PruneStep, QuantizeStep, Variant
from modelpress.compress.base import as_uri, fetch_weights
from modelpress.compress.errors import CompressionError
from modelpress.compress.preflight import PlannedStep
from modelpress.compress.request import Prepared, describe, parse_request, prepare

if TYPE_CHECKING:
    import torch

    from modelpress.compress.distributed import Group
    from modelpress.sizing.training import Sharding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompressionResult:
    """Where the variant was published and its manifest metadata."""

    uri: str
    metadata: dict[str, Any]
    already_published: bool = False
    helper: bool = False
    """This process was a helper rank of a distributed distillation: rank 0 publishes."""


def compress_variant(
    base: str,
    variant: Variant | Mapping[str, Any],
    evaluation: Evaluation | Mapping[str, Any],
    out: str,
    *,
    calibration: Calibration | Mapping[str, Any] | None = None,
    work_dir: str | Path | None = None,
    checkpoint_dir: str | None = None,
    cache_dir: str | Path | None = None,
    credentials: Any = None,
    sharding: Sharding = "replicate",
) -> CompressionResult:
    """Build, evaluate and publish one variant of `base` at `out`.

    `base`: a published base model (store URI) or a local checkpoint directory.
    `variant`, `evaluation`, `calibration`: API models or their wire JSON; `calibration`
    is the spec-wide default for steps without their own.
    `out`: the artifact URI (a plain path is taken as a local file:// store prefix);
    if a manifest is already there, nothing is computed.
    `checkpoint_dir`: directory or store URI for resumable distillation checkpoints
    (default: inside `work_dir`). `cache_dir`: where the base model's evaluation
    scores and generated calibration text are kept for reuse by other variants: a
    directory, or a store prefix (`<storage.uri>/evaluations/`) shared by every Job of
    the base (default: none). `sharding`: how a distillation over several processes
    lays out its training state (`modelpress.compress.distributed`).
    Raises `CompressionError` for requests that cannot be carried out, before any
    heavy work.
    """
    from modelpress.compress.distributed import join, leave
    from modelpress.storage import read_manifest

    started = time.monotonic()
    parsed_variant, parsed_evaluation, parsed_calibration = parse_request(
        variant, evaluation, calibration
    )
    ranks = join(sharding)
    if ranks.distributed and not any(
        isinstance(s.action, DistillStep) for s in parsed_variant.chain
    ):
        leave(ranks)
        raise CompressionError(
            f"{ranks.world_size} processes were started, but only distillation trains over "
            f"several; variant {parsed_variant.name!r} has no distill step: run it as one process",
            reason="NothingToDistribute",
        )
    out_uri = as_uri(out)
    existing = read_manifest(out_uri, credentials=credentials)
    if existing is not None:
        log.info("%s is already published; nothing to compute", out_uri)
        return CompressionResult(out_uri, dict(existing.metadata), already_published=True)
    with tempfile.TemporaryDirectory(prefix="modelpress-compress-", dir=work_dir) as temp:
        scratch = Path(temp)
        prepared = prepare(
            base,
            parsed_variant,
            parsed_evaluation,
            parsed_calibration,
            scratch,
            credentials=credentials,
            # the processes of a pod share its work directory: one download for all
            shared_base=Path(work_dir) if ranks.distributed and work_dir else None,
        )
        log.info("checks passed: %s", describe(prepared))
        fetch_weights(prepared.base)
        checkpoints_root = checkpoint_dir or str(Path(work_dir or scratch) / "checkpoints")
        chained = run_chain(prepared, scratch, checkpoints_root, cache_dir, credentials, ranks)
        if chained is None:  # a helper rank: its share of the training is done
            leave(ranks)
            return CompressionResult(out_uri, {}, helper=True)
        saved, lineage, parameters = chained
        leave(ranks)
        from modelpress.compress.judge import evaluate_saved

        metrics = evaluate_saved(prepared, saved, cache_dir, credentials)
        metadata = _metadata(
            prepared, saved, lineage, parameters, metrics, time.monotonic() - started
        )
        from modelpress.storage import publish

        publish(out_uri, saved, metadata, credentials=credentials)
    log.info(
        "published %s: perplexity %.4f (base %.4f, %+.2f %%), agreement %.4f",
        out_uri,
        metrics["perplexity"],
        metrics["basePerplexity"],
        100 * metrics["perplexityIncrease"],
        metrics["agreement"],
    )
    return CompressionResult(out_uri, metadata)


def run_chain(
    prepared: Prepared,
    scratch: Path,
    checkpoints_root: str,
    cache: str | Path | None,
    credentials: Any,
    ranks: Group | None = None,
) -> tuple[Path, list[dict[str, Any]], int] | None:
    """Run every step in order and save the result; returns (directory, lineage, parameters),
    or None on a helper rank of a distributed distillation once its training is done
    (rank 0 goes on alone: `distributed.going_on`)."""
    import torch

    from modelpress.compress.architecture import parameter_count
    from modelpress.compress.checkpoint import base_dtype, load_model, save_dense
    from modelpress.compress.distributed import going_on
    from modelpress.compress.generated import fill_generated_windows
    from modelpress.compress.metadata import peak_rss_bytes

    torch.manual_seed(0)
    dtype = base_dtype(prepared.config)
    model = load_model(prepared.base.directory)
    fill_generated_windows(prepared, model, cache, credentials)
    base_parameters = parameter_count(model)
    lineage: list[dict[str, Any]] = []
    quantized = False
    if (ranks := going_on(ranks, prepared.steps)) is None:  # a gang with nothing to train
        return None
    for planned in prepared.steps:
        step_started = time.monotonic()
        log.info("%s: starting", planned.label)
        windows_for_step = prepared.step_windows.get(planned.index)
        action = planned.action
        details: dict[str, Any] = {}
        if isinstance(action, PruneStep):
            from modelpress.compress.prune import prune

            if windows_for_step is None:  # the spec's validators make this unreachable
                raise CompressionError(
                    f"{planned.label} needs calibration text",
                    reason="MissingCalibration",
                )
            details = prune(model, action, windows_for_step)
        elif isinstance(action, DistillStep):
            model, details = _distill(
                prepared, planned, model, scratch, checkpoints_root, credentials, ranks
            )
            ranks = going_on(ranks, prepared.steps[planned.index + 1 :])
            if ranks is None:  # a helper rank, done
                return None
        # Counted before quantizing: the dense count (quantization adds scales, no weights).
        parameters = parameter_count(model)
        if isinstance(action, QuantizeStep):
            from modelpress.compress.quantize import quantize

            details = quantize(
                model,
                action,
                windows_for_step,
                base_parameters=base_parameters,
                dtype_bytes=dtype.itemsize,
            )
            quantized = True
        lineage.append(
            {
                "step": planned.index + 1,
                "kind": planned.kind,
                "params": _step_wire(planned),
                "parameters": parameters,
                "seconds": round(time.monotonic() - step_started, 3),
                # the process's peak so far: what loading and this step (and those
                # before it) needed, before evaluation loads the base model again
                "peakRssBytes": peak_rss_bytes(),
                **({"details": details} if details else {}),
            }
        )
        log.info(
            "%s: done in %.1f s, %d parameters", planned.label, lineage[-1]["seconds"], parameters
        )
    saved = scratch / "variant"
    if quantized:
        from modelpress.compress.quantize import save_quantized

        reshaped = any(not isinstance(p.action, QuantizeStep) for p in prepared.steps)
        save_quantized(model, prepared.tokenizer, saved, dtype, reshaped=reshaped)
    else:
        save_dense(model, prepared.tokenizer, saved, dtype)
    final_parameters = lineage[-1]["parameters"]
    del model
    gc.collect()
    return saved, lineage, final_parameters


def _distill(
    prepared: Prepared,
    planned: PlannedStep,
    model: torch.nn.Module,
    scratch: Path,
    checkpoints_root: str,
    credentials: Any,
    ranks: Group | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    from modelpress.compress.checkpoint import base_dtype, load_model
    from modelpress.compress.checkpoints import CheckpointStore
    from modelpress.compress.distill import build_student, distill
    from modelpress.compress.scale_tuning import scales_tuned_if_quantized

    action = planned.action
    assert isinstance(action, DistillStep)
    if planned.index == 0:
        teacher = model
        student = build_student(teacher, action.student_layers or 0)
    else:
        teacher = load_model(prepared.base.directory)
        student = model
    store = CheckpointStore(
        checkpoints_root,
        training_fingerprint(prepared, planned),
        scratch=scratch,
        credentials=credentials,
    )
    with scales_tuned_if_quantized(student, base_dtype(prepared.config)):
        details = distill(
            student,
            teacher,
            action,
            prepared.step_windows[planned.index],
            checkpoints=store,
            ranks=ranks,
        )
    if ranks is not None and ranks.distributed:
        details["processes"] = ranks.world_size
        details["sharding"] = ranks.sharding
    del teacher
    gc.collect()
    if ranks is not None and ranks.device != "cpu":
        import torch

        torch.cuda.empty_cache()  # quantization onloads layers onto this GPU next
    return student, details


def training_fingerprint(prepared: Prepared, planned: PlannedStep) -> str:
    """Names a training run by everything that determines it, for its checkpoints. Like
    a variant's key it names the output version, not the package's: an upgrade that
    changes no output resumes the distillations it interrupted."""
    chain = [_step_wire(p) | {"kind": p.kind} for p in prepared.steps[: planned.index + 1]]
    return content_key("distill", prepared.base.identity, chain, keys.OUTPUT_VERSION)


def _step_wire(planned: PlannedStep) -> dict[str, Any]:
    """The step's parameters as written, with the calibration it actually used."""
    wire = planned.action.to_wire()
    if planned.calibration is not None:
        wire["calibration"] = planned.calibration.to_wire()
    return wire


def _metadata(
    prepared: Prepared,
    saved: Path,
    lineage: list[dict[str, Any]],
    parameters: int,
    metrics: dict[str, Any],
    wall_seconds: float,
) -> dict[str, Any]:
    from modelpress.compress.checkpoint import read_config, weights_bytes
    from modelpress.compress.metadata import source_of, variant_metadata

    return variant_metadata(
        parameters=parameters,
        weights_bytes=weights_bytes(saved),
        model_config=read_config(saved),
        recipe=prepared.variant.to_wire(),
        evaluation=prepared.evaluation.measurement(),
        lineage=lineage,
        source=source_of(prepared.base.metadata, prepared.base.location),
        metrics=metrics,
        wall_seconds=wall_seconds,
    )
