"""Mixed precision under a size budget: which blocks stay precise, chosen by measurement.

A block is one attention or MLP module of a decoder layer, with all its Linear
layers: vLLM fuses q/k/v and gate/up into single layers that must share one scheme,
so the choice is made per block, never per projection. Each block's sensitivity is
the mean KL divergence of the model's next-token distribution from the unquantized
model's when that block alone is rounded to the low scheme (round to nearest,
each Linear's group size, with zero points when the step stores them), on a slice
of the step's calibration text.
Blocks are then kept precise greedily, most sensitivity per extra byte first,
while the whole checkpoint stays within the budget.

The byte arithmetic is `sizing.schemes.linear_weight_bytes`, the one sizing uses,
so the budget holds for the checkpoint llmcompressor writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelpress.api.steps import MixedPrecision, QuantizeStep
from modelpress.compress.errors import CompressionError
from modelpress.compress.progress import Progress
from modelpress.sizing.schemes import (
    BASE_BYTES_PER_PARAMETER,
    linear_weight_bytes,
    resolve_scheme,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Calibration tokens the sensitivity of each block is measured on. Every block costs
#: one forward pass over them (from its own layer on), so this bounds the analysis.
SENSITIVITY_TOKENS = 1024


@dataclass(frozen=True)
class Block:
    """An attention or MLP module of one decoder layer and what it costs either way."""

    name: str
    layer: int
    linears: tuple[str, ...]
    low_bytes: int
    high_bytes: int

    @property
    def extra_bytes(self) -> int:
        return self.high_bytes - self.low_bytes


@dataclass(frozen=True)
class Plan:
    """The blocks kept precise and what the checkpoint then weighs."""

    precise: tuple[str, ...]
    precise_linears: tuple[str, ...]
    total_bytes: int
    smallest_bytes: int
    largest_bytes: int
    budget_bytes: int


def choose(
    blocks: list[Block],
    sensitivity: dict[str, float],
    *,
    fixed_bytes: int,
    budget_bytes: int,
    base_bytes: int,
) -> Plan:
    """Keep blocks precise, most sensitivity per extra byte first, within the budget
    (`base_bytes`: the base model at 16 bits, which the budget is a share of).

    Pure: the same blocks, sensitivities and budget always give the same plan. A block
    whose extra bytes no longer fit is passed over for cheaper ones behind it."""
    smallest = fixed_bytes + sum(block.low_bytes for block in blocks)
    largest = smallest + sum(block.extra_bytes for block in blocks)
    if smallest > budget_bytes:
        raise CompressionError(
            f"mixedPrecision.budget {budget_bytes / base_bytes:.3f} is below "
            f"{smallest / base_bytes:.3f}, this model's size with every block at the step's "
            f"scheme: raise the budget above {smallest / base_bytes:.3f} (or leave fewer "
            "modules in ignore)",
            reason="RecipeDoesNotFitModel",
        )
    ranked = sorted(
        blocks,
        key=lambda block: (-sensitivity[block.name] / max(block.extra_bytes, 1), block.name),
    )
    total, precise = smallest, []
    for block in ranked:
        if total + block.extra_bytes <= budget_bytes:
            total += block.extra_bytes
            precise.append(block.name)
    kept = [block for block in blocks if block.name in precise]
    return Plan(
        precise=tuple(block.name for block in kept),
        precise_linears=tuple(name for block in kept for name in block.linears),
        total_bytes=total,
        smallest_bytes=smallest,
        largest_bytes=largest,
        budget_bytes=budget_bytes,
    )


def find_blocks(
    model: torch.nn.Module, step: QuantizeStep, dtype_bytes: int
) -> tuple[list[Block], int]:
    """The model's blocks, and the bytes of everything else (embeddings, norms, biases,
    ignored and out-of-layer Linears) in the checkpoint."""
    import torch

    from modelpress.compress.architecture import decoder_layers

    mixed = _mixed(step)
    low = resolve_scheme(step.stored_scheme)
    sensitive = mixed.sensitive_for(step.scheme)
    high = resolve_scheme("BF16" if sensitive == "none" else sensitive)

    def weight_bytes(module: torch.nn.Linear, scheme: Any, *, low: bool) -> int:
        out_features, in_features = module.weight.shape
        group = step.group_size_for(in_features) if low else None
        return linear_weight_bytes(
            out_features, in_features, scheme, group, scale_bytes=dtype_bytes
        )

    grouped: dict[str, tuple[int, list[tuple[str, torch.nn.Linear]]]] = {}
    layers = decoder_layers(model, purpose="mixedPrecision")
    layer_of = {id(layer): index for index, layer in enumerate(layers)}
    for layer_name, layer in model.named_modules():
        if id(layer) not in layer_of:
            continue
        for name, module in layer.named_modules(prefix=layer_name):
            if isinstance(module, torch.nn.Linear) and not ignored(name, step.ignore):
                parent = name.rsplit(".", 1)[0]
                grouped.setdefault(parent, (layer_of[id(layer)], []))[1].append((name, module))
    blocks = [
        Block(
            name=parent,
            layer=layer_index,
            linears=tuple(name for name, _ in members),
            low_bytes=sum(weight_bytes(m, low, low=True) for _, m in members),
            high_bytes=sum(weight_bytes(m, high, low=False) for _, m in members),
        )
        for parent, (layer_index, members) in grouped.items()
    ]
    in_blocks = {id(m.weight) for _, (_, members) in grouped.items() for _, m in members}
    fixed = 0
    for name, module in model.named_modules():
        loose = isinstance(module, torch.nn.Linear) and id(module.weight) not in in_blocks
        if loose and not ignored(name, step.ignore):
            fixed += weight_bytes(module, low, low=True)
            in_blocks.add(id(module.weight))
    seen: set[int] = set()
    for parameter in model.parameters():
        if id(parameter) not in in_blocks and id(parameter) not in seen:
            seen.add(id(parameter))
            fixed += parameter.numel() * dtype_bytes
    return blocks, fixed


def ignored(name: str, patterns: list[str]) -> bool:
    """Whether llmcompressor's `ignore` list names this module (a name or `re:` pattern)."""
    from compressed_tensors.utils import match_name

    return any(match_name(name, pattern) for pattern in patterns)


def measure_sensitivity(
    model: torch.nn.Module, blocks: list[Block], step: QuantizeStep, windows: torch.Tensor
) -> dict[str, float]:
    """Mean KL(unquantized ‖ this block rounded) per block, on a slice of `windows`."""
    import torch

    from modelpress.compress.architecture import decoder_layers
    from modelpress.compress.evaluate import TOP_K, kl_to_reference

    layers = decoder_layers(model, purpose="mixedPrecision")
    sample = sensitivity_sample(windows)
    modules = dict(model.named_modules())
    model.eval()
    with torch.no_grad():
        outputs: list[Any] = []
        hooks = [
            layer.register_forward_hook(lambda _m, _a, out: outputs.append(out)) for layer in layers
        ]
        try:
            logits = model(input_ids=sample, use_cache=False).logits[:, :-1].float()
        finally:
            for hook in hooks:
                hook.remove()
        reference = torch.log_softmax(logits, dim=-1).topk(min(TOP_K, logits.shape[-1]), dim=-1)
        del logits
        progress = Progress("mixed precision: sensitivity", total=len(blocks), unit="blocks")
        sensitivity = {}
        for block in blocks:
            with rounded(modules, block.linears, step), replayed(layers, outputs, block):
                logits = model(input_ids=sample, use_cache=False).logits[:, :-1].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                kl = kl_to_reference(logprobs, reference.indices, reference.values)
            sensitivity[block.name] = float(kl.mean())
            progress.advance(1, kl=f"{sensitivity[block.name]:.5f}")
    return sensitivity


def sensitivity_sample(windows: torch.Tensor) -> torch.Tensor:
    """The first windows of the calibration text, about SENSITIVITY_TOKENS tokens."""
    length = min(windows.shape[1], SENSITIVITY_TOKENS)
    count = max(1, SENSITIVITY_TOKENS // length)
    return windows[:count, :length]


@contextmanager
def rounded(modules: dict[str, Any], names: tuple[str, ...], step: QuantizeStep) -> Iterator[None]:
    """The named Linears' weights rounded to the step's grid, restored after."""
    bits = resolve_scheme(step.scheme).bits
    saved = {name: modules[name].weight.data.clone() for name in names}
    try:
        for name in names:
            weight = modules[name].weight
            group = step.group_size_for(weight.shape[1])
            weight.data = round_to_grid(
                weight.data, bits, group, zero_points=step.symmetric is False
            )
        yield
    finally:
        for name, data in saved.items():
            modules[name].weight.data = data


def round_to_grid(
    weight: torch.Tensor, bits: int, group: int | None, *, zero_points: bool = False
) -> torch.Tensor:
    """Round-to-nearest with one scale per `group` inputs (or per row): symmetric about
    zero, or with `zero_points` over each group's own range, as the step will store it."""
    out_features, in_features = weight.shape
    size = group or in_features
    grouped = weight.float().reshape(out_features, in_features // size, size)
    if zero_points:
        low = grouped.amin(-1, keepdim=True).clamp_max(0)
        high = grouped.amax(-1, keepdim=True).clamp_min(0)
        scale = ((high - low) / (2**bits - 1)).clamp_min(1e-12)
        zero = (-low / scale).round()
        levels = ((grouped / scale).round() + zero).clamp(0, 2**bits - 1)
        restored = (levels - zero) * scale
    else:
        limit = 2 ** (bits - 1) - 1
        scale = grouped.abs().amax(-1, keepdim=True).clamp_min(1e-12) / limit
        restored = (grouped / scale).round().clamp(-limit - 1, limit) * scale
    return restored.reshape(out_features, in_features).to(weight.dtype)


@contextmanager
def replayed(layers: Any, outputs: list[Any], block: Block) -> Iterator[None]:
    """The layers before the block's own return what they returned unperturbed, so a
    forward pass only computes from the block's layer on."""
    try:
        for index in range(block.layer):
            layers[index].forward = _returning(outputs[index])
        yield
    finally:
        for index in range(block.layer):
            del layers[index].forward


def _returning(value: Any) -> Any:
    def forward(*_args: Any, **_kwargs: Any) -> Any:
        return value

    return forward


def plan_mixed_precision(
    model: torch.nn.Module,
    step: QuantizeStep,
    windows: torch.Tensor,
    *,
    base_parameters: int,
    dtype_bytes: int,
) -> tuple[Plan, dict[str, float]]:
    """Measure every block and choose the precise ones for `step`'s budget; returns the
    plan and every block's sensitivity."""
    mixed = _mixed(step)
    base_bytes = base_parameters * BASE_BYTES_PER_PARAMETER
    sizes = {"budget_bytes": int(mixed.budget * base_bytes), "base_bytes": base_bytes}
    blocks, fixed = find_blocks(model, step, dtype_bytes)
    # Refuse an unreachable budget before the measurement, not after it.
    choose(blocks, dict.fromkeys((b.name for b in blocks), 0.0), fixed_bytes=fixed, **sizes)
    sensitivity = measure_sensitivity(model, blocks, step, windows)
    plan = choose(blocks, sensitivity, fixed_bytes=fixed, **sizes)
    log.info(
        "mixed precision: %d of %d blocks kept %s, %d of %d budget bytes",
        len(plan.precise),
        len(blocks),
        mixed.sensitive_for(step.scheme),
        plan.total_bytes,
        plan.budget_bytes,
    )
    return plan, sensitivity


def _mixed(step: QuantizeStep) -> MixedPrecision:
    if step.mixed_precision is None:
        raise ValueError("the step has no mixedPrecision")
    return step.mixed_precision
