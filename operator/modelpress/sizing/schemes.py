"""Predicted weight bytes of a model under a quantization scheme, before compressing it.

The prediction follows the tensors llmcompressor writes in the compressed-tensors
format, one Linear weight at a time:

- W4A16 / W4A16_ASYM / W8A16 (pack-quantized): `weight_packed` int32 holding
  eight 4-bit (or four 8-bit) values along the input dimension, `weight_scale`
  with one value per group of `g` inputs (unless told: for 4 bits, 128 where it divides
  the Linear's inputs, else 64, else 32, as `api.steps.default_group_size` chooses; for
  8 bits one per output channel, as -1 asks), `weight_shape` (two int64), and for the asymmetric variant
  `weight_zero_point` packed into int32 along the output dimension.
- W8A8 (int-quantized) and FP8_DYNAMIC (float-quantized): one byte per weight, one
  scale per output channel; activations are quantized at run time, so nothing else.
- FP8 (float-quantized, static): one byte per weight, a per-tensor weight scale and
  a per-tensor input scale.
- BF16: the checkpoint as it is.

Scales have the checkpoint's dtype (bfloat16 for every model sizing targets).
Embeddings, lm_head (llmcompressor's recipes ignore it), norms, biases and MoE
routers stay in the checkpoint dtype under every scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelpress.api.steps import default_group_size
from modelpress.sizing.errors import SizingError
from modelpress.sizing.shape import ModelShape

#: Bytes of each checkpoint dtype sizing recognises.
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float8_e4m3fn": 1}

#: compressed-tensors stores `weight_shape` as a 1-D int64 tensor of (out, in).
WEIGHT_SHAPE_BYTES = 2 * 8

#: Bytes per weight of a model at 16 bits: the unit a mixed-precision budget is a share of.
BASE_BYTES_PER_PARAMETER = 2

#: The group size that asks for one scale per output channel instead (GPTQ's convention).
PER_CHANNEL = -1


@dataclass(frozen=True)
class WeightScheme:
    """How a scheme stores one Linear weight."""

    name: str
    bits: Literal[4, 8, 16]
    packed: bool  # values packed into int32 along the input dimension
    scales: Literal["none", "channel", "group", "tensor"]
    zero_point: bool = False
    input_scale: bool = False
    description: str = ""


SCHEMES: dict[str, WeightScheme] = {
    "BF16": WeightScheme("BF16", 16, False, "none", description="unquantized 16-bit weights"),
    "W8A16": WeightScheme(
        "W8A16", 8, True, "group", description="int8 weights, one scale per group"
    ),
    "W4A16": WeightScheme(
        "W4A16", 4, True, "group", description="int4 weights, one scale per group"
    ),
    "W4A16_ASYM": WeightScheme(
        "W4A16_ASYM",
        4,
        True,
        "group",
        zero_point=True,
        description="int4 weights, one scale and zero-point per group",
    ),
    "W8A8": WeightScheme(
        "W8A8", 8, False, "channel", description="int8 weights and dynamic int8 activations"
    ),
    "FP8_DYNAMIC": WeightScheme(
        "FP8_DYNAMIC", 8, False, "channel", description="fp8 weights, dynamic fp8 activations"
    ),
    "FP8": WeightScheme(
        "FP8",
        8,
        False,
        "tensor",
        input_scale=True,
        description="fp8 weights and activations, static per-tensor scales",
    ),
}

_ALIASES = {
    "NONE": "BF16",
    "FP16": "BF16",
    "FLOAT16": "BF16",
    "BFLOAT16": "BF16",
    "W16A16": "BF16",
    "W8A8_INT8": "W8A8",
    "INT8": "W8A8",
    "W8A8_FP8": "FP8",
}


def resolve_scheme(scheme: str) -> WeightScheme:
    """The scheme named `scheme` (case and '-' vs '_' do not matter)."""
    key = str(scheme).strip().upper().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in SCHEMES:
        known = ", ".join(SCHEMES)
        raise SizingError(f"unknown scheme {scheme!r}; use one of {known}")
    return SCHEMES[key]


def linear_weight_bytes(
    out_features: int,
    in_features: int,
    scheme: WeightScheme,
    group_size: int | None,
    scale_bytes: int = 2,
) -> int:
    """Bytes one Linear weight occupies in a compressed-tensors checkpoint.

    `group_size` None means one scale per output channel.
    """
    if scheme.bits == 16:
        return out_features * in_features * scale_bytes
    if scheme.packed:
        per_int32 = 32 // scheme.bits
        values = out_features * -(-in_features // per_int32) * 4
    else:
        values = out_features * in_features
    groups = -(-in_features // group_size) if group_size else 1
    scales = scale_bytes if scheme.scales == "tensor" else out_features * groups * scale_bytes
    zero_points = 0
    if scheme.zero_point:
        zero_points = -(-out_features // (32 // scheme.bits)) * groups * 4
    input_scale = scale_bytes if scheme.input_scale else 0
    shape = WEIGHT_SHAPE_BYTES if scheme.packed else 0
    return values + scales + zero_points + input_scale + shape


def weight_group_sizes(
    shape: ModelShape, scheme: WeightScheme, group_size: int | None = None
) -> dict[int, int | None]:
    """The group size of every Linear input width of `shape` under `scheme`; None means
    one scale per output channel.

    Grouped schemes (W4A16, W8A16) take `group_size`, else the checkpoint's own
    (`shape.weight_group_sizes`), else, as a quantize step would, each width's
    `default_group_size` at 4 bits and per-channel scales at 8; -1 asks for per-channel
    scales. A given group size must divide every width, as llmcompressor
    refuses partial groups. Other schemes take no group size.
    """
    widths = sorted({weight.in_features for weight in shape.linear_weights()})
    if scheme.scales != "group":
        if group_size is not None:
            raise SizingError(
                f"scheme {scheme.name} has no group size; drop the group size or use W4A16 or W8A16"
            )
        return dict.fromkeys(widths)
    if group_size is None and shape.weight_group_sizes:  # the checkpoint's own
        return {width: shape.weight_group_sizes.get(width) for width in widths}
    chosen = group_size
    if chosen is None and scheme.bits == 8:  # as a quantize step writes it (not the preset)
        return dict.fromkeys(widths)
    if chosen is None:
        return {width: default_group_size(width) for width in widths}
    if chosen == PER_CHANNEL:
        return dict.fromkeys(widths)
    if chosen <= 0:
        raise SizingError(
            f"group size must be a positive integer, or -1 for per-channel scales; got {chosen}"
        )
    misfits = [width for width in widths if width % chosen]
    if misfits:
        raise SizingError(
            f"group size {chosen} does not divide the Linear input widths {misfits}, and "
            "llmcompressor refuses partial groups; choose a group size that divides them "
            "(e.g. 64 or 32), -1 for per-channel scales, or none for a size per width"
        )
    return dict.fromkeys(widths, chosen)


def checkpoint_dtype_bytes(shape: ModelShape) -> int:
    """Bytes per parameter of the tensors a scheme leaves alone."""
    return DTYPE_BYTES.get(shape.torch_dtype, 2)


def predict_weights_bytes(shape: ModelShape, scheme: str, group_size: int | None = None) -> int:
    """Tensor bytes of `shape`'s checkpoint after llmcompressor applies `scheme`, with the
    group sizes `weight_group_sizes` chooses."""
    resolved = resolve_scheme(scheme)
    groups = weight_group_sizes(shape, resolved, group_size)
    plain = checkpoint_dtype_bytes(shape)
    kept = (shape.embedding_parameters() + shape.other_parameters()) * plain
    return kept + sum(
        weight.count
        * linear_weight_bytes(
            weight.out_features,
            weight.in_features,
            resolved,
            groups[weight.in_features],
            scale_bytes=plain,
        )
        for weight in shape.linear_weights()
    )
