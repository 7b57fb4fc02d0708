"""Checks a variant against the base model's config before anything heavy runs.

Every rule here needs only the config (and a weightless copy of the model built
from it), so a bad request fails in seconds with a message saying what to change,
instead of after a download or an hour of calibration. The same arithmetic
(how many layers a fraction drops, which layers a student keeps) is used when the
steps run, so what is checked is what happens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from modelpress.api.inputs import GENERATED_CALIBRATION, Calibration
from modelpress.api.spec import Evaluation
from modelpress.api.steps import WEIGHT_ONLY, DistillStep, PruneStep, QuantizeStep, Variant
from modelpress.compress.architecture import (
    PER_LAYER_CONFIG_LISTS,
    check_ffn_width,
    check_layer_drop,
    empty_model,
)
from modelpress.compress.errors import CompressionError
from modelpress.sizing.chain import (
    ChainError,
    ffn_channels_kept,
    layers_to_drop,
    student_layer_indices,
)


@dataclass(frozen=True)
class PlannedStep:
    """One step of a chain, with the text it learns from resolved."""

    index: int
    kind: str
    action: QuantizeStep | PruneStep | DistillStep
    calibration: Calibration | None

    @property
    def label(self) -> str:
        return f"step {self.index + 1} ({self.kind})"


def keep_layers_in_config(config: Any, kept: list[int]) -> None:
    """Rewrite `config` for a model that keeps only the blocks at `kept` (in order)."""
    for name in PER_LAYER_CONFIG_LISTS:
        values = getattr(config, name, None)
        if isinstance(values, list | tuple) and len(values) == config.num_hidden_layers:
            setattr(config, name, [values[index] for index in kept])
    config.num_hidden_layers = len(kept)


def resolve_chain(variant: Variant, default_calibration: Calibration | None) -> list[PlannedStep]:
    """The variant's steps with the text each learns from: its own calibration, else
    `default_calibration`, else text the base model generates."""
    planned = []
    for index, step in enumerate(variant.chain):
        calibration = None
        if step.needs_data:
            calibration = step.action.calibration or default_calibration or GENERATED_CALIBRATION
        planned.append(PlannedStep(index, step.kind, step.action, calibration))
    return planned


def check_chain(config: Any, steps: list[PlannedStep], evaluation: Evaluation | None = None) -> Any:
    """Validate every step against the config it will see; returns the final config.

    `config` is a transformers `PretrainedConfig`; it is not modified.
    """
    current = copy.deepcopy(config)
    for planned in steps:
        current = _check_step(current, planned, first=planned.index == 0)
    limit = getattr(config, "max_position_embeddings", None)
    lengths = [("evaluation", evaluation.sequence_length)] if evaluation else []
    lengths += [(p.label, p.calibration.sequence_length) for p in steps if p.calibration]
    for where, length in lengths:
        if isinstance(limit, int) and length > limit:
            raise CompressionError(
                f"{where} sequenceLength {length} exceeds the model's {limit} positions: "
                f"use at most {limit}",
                reason="InvalidSequenceLength",
            )
    return current


def _check_step(config: Any, planned: PlannedStep, *, first: bool) -> Any:
    action = planned.action
    try:
        if isinstance(action, PruneStep):
            return _check_prune(config, action)
        if isinstance(action, DistillStep):
            return _check_distill(config, action, first=first)
        _check_quantize(config, action)
        return config
    except (CompressionError, ChainError) as error:
        raise CompressionError(f"{planned.label}: {error}", reason=error.reason) from None


def _check_prune(config: Any, step: PruneStep) -> Any:
    model = empty_model(config)
    after = copy.deepcopy(config)
    if step.method == "layer-drop":
        num_layers = check_layer_drop(model)
        dropped = layers_to_drop(num_layers, step.fraction)
        keep_layers_in_config(after, list(range(num_layers - dropped)))
    else:
        width = check_ffn_width(model)
        after.intermediate_size = ffn_channels_kept(width, step.fraction)
    return after


def _check_distill(config: Any, step: DistillStep, *, first: bool) -> Any:
    """A first distill builds its student from the teacher (the Variant model requires
    studentLayers there, and only there); a later one trains the previous result."""
    if not first or step.student_layers is None:
        return config
    teacher_layers = check_layer_drop(empty_model(config))
    kept = student_layer_indices(teacher_layers, step.student_layers)
    after = copy.deepcopy(config)
    keep_layers_in_config(after, kept)
    return after


def _check_quantize(config: Any, step: QuantizeStep) -> None:
    group = step.group_size if step.scheme in WEIGHT_ONLY else None
    if group is None:
        return
    from compressed_tensors.utils import match_named_modules

    model = empty_model(config)
    offenders: dict[int, list[str]] = {}
    for name, module in match_named_modules(model, ["Linear"], step.ignore):
        columns = module.in_features
        if columns % group:
            offenders.setdefault(columns, []).append(name)
    if offenders:
        widths = sorted(offenders)
        divisors = [g for g in (256, 128, 64, 32, 16) if all(w % g == 0 for w in widths)]
        hint = f"use groupSize {divisors[0]}" if divisors else "use a groupSize dividing them"
        if step.scheme != "W4A16":
            hint += ", or leave groupSize unset for one scale per output channel"
        example = offenders[widths[0]][0]
        raise CompressionError(
            f"groupSize {group} does not divide the input width {', '.join(map(str, widths))} "
            f"of {sum(map(len, offenders.values()))} linear layer(s) (e.g. {example}): {hint}",
            reason="InvalidGroupSize",
        )
