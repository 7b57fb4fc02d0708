"""Checks of a recipe against the base model's config.json, before any Job starts.

Rules that need no config are the API server's (CRD schema and CEL). The rest need
the model's shape, which the planner has once the base model is stored: a group
size that does not divide a layer's width, a prune that leaves no layer, a student
as large as its teacher, a sequence longer than the model's positions. Caught
here, they are a condition naming the field, not a Job that fails after the
base model is downloaded. The compressor checks the same again, on the real
modules, and does the same arithmetic (`sizing.chain`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from modelpress.api.reasons import Reason
from modelpress.api.spec import CompressedModelSpec, step_calibration
from modelpress.api.steps import WEIGHT_ONLY, QuantizeStep, Variant
from modelpress.plan.progress import Verdict
from modelpress.plan.resources import shape_of
from modelpress.sizing import ModelShape
from modelpress.sizing.chain import (
    ChainError,
    ffn_channels_kept,
    layers_to_drop,
    student_layer_indices,
)
from modelpress.sizing.schemes import (
    BASE_BYTES_PER_PARAMETER,
    predict_weights_bytes,
)

GROUP_SIZES = (256, 128, 64, 32, 16)


def recipe_problem(
    spec: CompressedModelSpec, variant: Variant, config: Mapping[str, Any] | None
) -> Verdict | None:
    """Why `variant` cannot apply to a model with this config.json, or None (also when
    the config is missing or unusual: the Job's own checks then decide)."""
    shape = shape_of(config)
    if shape is None:
        return None
    where = f"spec.variants[{spec.variants.index(variant)}]"
    limit = shape.max_position_embeddings
    lengths = [("spec.evaluation.sequenceLength", spec.evaluation.sequence_length)]
    layers, width = shape.num_hidden_layers, shape.expert_intermediate_size
    for index, step in enumerate(variant.chain):
        label = (f"{where}.steps[{index}]" if variant.steps else where) + f".{step.kind}"
        calibration = step.action.calibration or (
            step_calibration(spec, step) if step.needs_data else None
        )
        if calibration is not None:
            field = f"{label}.calibration" if step.action.calibration else "spec.calibration"
            lengths.append((f"{field}.sequenceLength", calibration.sequence_length))
        try:
            if step.prune is not None and step.prune.method == "layer-drop":
                layers -= layers_to_drop(layers, step.prune.fraction)
            elif step.prune is not None:
                width = ffn_channels_kept(width, step.prune.fraction)
            elif step.distill is not None and index == 0 and step.distill.student_layers:
                layers = len(student_layer_indices(layers, step.distill.student_layers))
            elif step.quantize is not None:
                _check_groups(step.quantize, shape, width)
                _check_budget(step.quantize, shape, layers, width)
        except ChainError as error:
            return Verdict(Reason.RECIPE_DOES_NOT_FIT_MODEL, f"{label}: {error}")
    for field, length in lengths:
        if length > limit:
            return Verdict(
                Reason.RECIPE_DOES_NOT_FIT_MODEL,
                f"{field} is {length} but the base model has {limit} positions: use at most "
                f"{limit}",
            )
    return None


def _check_groups(step: QuantizeStep, shape: ModelShape, width: int) -> None:
    """Every quantized linear layer's input width must be a multiple of the group size
    the step asks for (unset, each layer gets one that divides it)."""
    group = step.group_size
    if group is None or step.scheme not in WEIGHT_ONLY:
        return
    inputs = {
        "q_proj": shape.hidden_size,
        "o_proj": shape.num_attention_heads * shape.head_dim,
        "up_proj": shape.hidden_size,
        "down_proj": width,
    }
    quantized = {name: w for name, w in inputs.items() if not _ignored(name, step.ignore)}
    bad = sorted({w for w in quantized.values() if w % group})
    if not bad:
        return
    fits = [g for g in GROUP_SIZES if all(w % g == 0 for w in quantized.values())]
    hint = f"use groupSize {fits[0]}" if fits else "use a groupSize that divides them"
    if step.scheme != "W4A16":
        hint += ", or leave groupSize unset for one scale per output channel"
    names = ", ".join(n for n, w in quantized.items() if w in bad)
    raise ChainError(
        f"groupSize {group} does not divide the input width "
        f"{', '.join(map(str, bad))} of {names}: {hint}",
        reason="InvalidGroupSize",
    )


def _check_budget(step: QuantizeStep, shape: ModelShape, layers: int, width: int) -> None:
    """A mixed-precision budget must exceed the size with every block at the low scheme
    (a lower bound here: only lm_head is taken as ignored)."""
    if step.mixed_precision is None:
        return
    final = shape.model_copy(update={"num_hidden_layers": layers})
    if not shape.num_experts:
        final = final.model_copy(update={"intermediate_size": width})
    smallest = predict_weights_bytes(final, step.stored_scheme, step.group_size)
    base = shape.parameter_count() * BASE_BYTES_PER_PARAMETER
    budget = step.mixed_precision.budget
    if smallest > budget * base:
        raise ChainError(
            f"mixedPrecision.budget {budget:g} is below {smallest / base:.3f}, this model's "
            f"size with every block at {step.scheme}: raise the budget above "
            f"{smallest / base:.3f}",
            reason="RecipeDoesNotFitModel",
        )


def _ignored(module: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("re:"):
            if re.search(pattern[3:], module):
                return True
        elif pattern == module or pattern.endswith(f".{module}"):
            return True
    return False
