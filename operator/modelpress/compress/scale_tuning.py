"""Distillation after quantization: tune the scales, keep every integer weight.

A quantized Linear's weight is `codes * scale`, one scale per group of inputs (or per
output channel); with zero points, `codes` is each integer level minus its group's
zero point, and both stay. GPTQ chooses codes and scales layer by layer, each against its own
inputs; nothing looks at what the rounding errors do to the model's output together.
Distilling from the base model afterwards, with the codes fixed, lets every scale and
norm weight move to undo that, end to end (EfficientQAT's E2E-QP). The checkpoint keeps
its format and its size: the same codes, new scales.

Each scale trains as a gain `exp(g)` on its GPTQ value (g starts at 0), so the learning
rate is a relative step whatever a layer's scale, and a scale can never turn negative.
On SmolLM2-135M, W4A16 GPTQ g64 then 120 steps of 2 x 256 license tokens at lr 1e-3
(benchmarks/compression.py, w4a16-gptq-kd): +11.4 % -> +2.2 % perplexity on held-out
license text, +16.9 % -> +9.7 % on this project's docs (KL divergence 0.121 -> 0.101
there), in about 6 minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

GAIN = "weight_scale_gain"
"""The trained parameter beside each quantized Linear's `weight_scale`."""
CODES = "weight_codes"


def quantized_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """The Linears quantization gave integer weights with scales (weight-only schemes)."""
    import torch

    found = []
    for module in model.modules():
        scheme = getattr(module, "quantization_scheme", None)
        weights = getattr(scheme, "weights", None)
        if isinstance(module, torch.nn.Linear) and weights is not None and weights.type == "int":
            found.append(module)
    return found


def is_quantized(model: torch.nn.Module) -> bool:
    return bool(quantized_linears(model))


def _expanded(scale: torch.Tensor, columns: int) -> torch.Tensor:
    """One scale per weight: a group's (or a channel's) scale repeated over its inputs."""
    return scale.repeat_interleave(columns // scale.shape[1], dim=1)


def _codes(linear: torch.nn.Linear, dtype: torch.dtype) -> torch.Tensor:
    """Each weight's integer level minus its group's zero point (none when symmetric):
    what the scale multiplies. The levels are those saving in `dtype` would write,
    computed as compressed-tensors computes them (weight / scale in that dtype, plus the
    zero point, rounded and clamped), so the zero points stay as GPTQ chose them."""
    import torch
    from compressed_tensors.quantization.lifecycle.forward import quantize

    args = linear.quantization_scheme.weights  # type: ignore[union-attr]
    zero_point = getattr(linear, "weight_zero_point", None)
    if getattr(linear, "weight_g_idx", None) is not None:
        raise ValueError("scale tuning expects groups of consecutive inputs (no g_idx)")
    weight, scale = linear.weight.detach().to(dtype), linear.weight_scale.detach().to(dtype)
    levels = quantize(weight, scale, zero_point, args, dtype=torch.int8)
    if args.symmetric or zero_point is None:
        return levels
    return levels - _expanded(zero_point.detach().to(torch.int8), linear.in_features)


def _dequantize(module: torch.nn.Linear, args: tuple) -> None:
    """Before each forward: the weight, rebuilt from the fixed codes and the tuned scales."""
    scale = module.weight_scale * getattr(module, GAIN).exp()
    module.weight = getattr(module, CODES) * _expanded(scale, module.in_features)


@contextlib.contextmanager
def tuned_scales(model: torch.nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """Within the block, `model`'s quantized Linears compute their weights from fixed codes
    and a trainable gain on each scale (distillation then trains the gains and the norm
    weights: `trainable`). On leaving, the gains are folded into the scales, rounded to
    `dtype` (the scales' saved dtype) first, so that saving writes exactly the same codes."""
    import torch
    from compressed_tensors.quantization.lifecycle.helpers import (
        disable_quantization,
        enable_quantization,
    )

    linears = quantized_linears(model)
    hooks = []
    model.apply(disable_quantization)  # the weight below is already on its grid
    for linear in linears:
        codes = _codes(linear, dtype)
        del linear.weight  # a plain tensor from now on, rebuilt before every forward
        linear.register_buffer(CODES, codes, persistent=False)
        scale: torch.Tensor = linear.weight_scale  # type: ignore[assignment]
        gain = torch.zeros_like(scale, dtype=torch.float32)
        linear.register_parameter(GAIN, torch.nn.Parameter(gain))
        hooks.append(linear.register_forward_pre_hook(_dequantize))
    try:
        yield
    finally:
        with torch.no_grad():
            for hook in hooks:
                hook.remove()
            for linear in linears:
                gain = getattr(linear, GAIN).to(linear.weight_scale.device)
                tuned = (linear.weight_scale.float() * gain.exp()).to(dtype)
                linear.weight_scale.data = tuned.to(linear.weight_scale.dtype)
                codes = getattr(linear, CODES).to(tuned.device)
                weight = codes.float() * _expanded(tuned.float(), linear.in_features)
                delattr(linear, GAIN)
                delattr(linear, CODES)
                linear.__dict__.pop("weight", None)  # the last forward's
                linear.weight = torch.nn.Parameter(weight, requires_grad=False)
        model.requires_grad_(False)
        model.apply(enable_quantization)


def scales_tuned_if_quantized(model: torch.nn.Module, dtype: torch.dtype) -> Any:
    """`tuned_scales` for a quantized model (a distill step after quantize); else nothing."""
    return tuned_scales(model, dtype) if is_quantized(model) else contextlib.nullcontext()


def trainable(model: torch.nn.Module) -> None:
    """Only the scale gains and the norm weights learn; codes, embeddings and any Linear
    left unquantized stay as they are."""
    model.requires_grad_(False)
    for module in model.modules():
        if "norm" in type(module).__name__.lower():
            module.requires_grad_(True)
    for linear in quantized_linears(model):
        getattr(linear, GAIN).requires_grad_(True)
