"""The shape a chain of steps leaves: blocks a layer-drop removes, MLP channels an
ffn-width prune keeps, the teacher layers a student keeps.

Pure arithmetic, shared by the compressor (which does it) and the planner (which
checks a recipe against the base model's config before any Job starts), so what
is checked is what happens.
"""

from __future__ import annotations

import math

FFN_ALIGNMENT = 64
"""Pruned MLP widths are multiples of this (when the original width is), so quantization
groups and GPU kernels still divide them."""


class ChainError(ValueError):
    """A step that cannot apply to a model of this shape; the message says what to use."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def layers_to_drop(num_layers: int, fraction: float) -> int:
    """Blocks a layer-drop of `fraction` removes: the nearest whole number, at least one."""
    count = max(1, math.floor(num_layers * fraction + 0.5))
    if count >= num_layers:
        largest = math.floor(1000 * (num_layers - 0.5) / num_layers) / 1000
        raise ChainError(
            f"prune fraction {fraction} of {num_layers} layers removes {count} and leaves no "
            f"layer: use a fraction below {largest:.3f}",
            reason="InvalidPrune",
        )
    return count


def ffn_channels_kept(width: int, fraction: float) -> int:
    """MLP channels an ffn-width prune of `fraction` keeps, rounded to FFN_ALIGNMENT."""
    align = FFN_ALIGNMENT if width % FFN_ALIGNMENT == 0 and width >= 2 * FFN_ALIGNMENT else 1
    kept = max(align, round(width * (1 - fraction) / align) * align)
    if kept >= width:
        smallest = align / width / 2
        raise ChainError(
            f"ffn-width fraction {fraction} of {width} channels removes none once rounded to "
            f"multiples of {align}: use a fraction of at least {smallest:.3f}",
            reason="InvalidPrune",
        )
    return kept


FFN_GRAM_BUDGET = 4 * 2**30
"""Bytes of MLP-activation Gram matrices an ffn-width prune holds at once (fp32, one
width x width matrix per block); blocks beyond it wait for another calibration pass."""


def ffn_refit_bytes(width: int, layers: int) -> int:
    """Host memory an ffn-width prune's refit needs beyond the model: the Gram matrices
    of one pass, and one block's solve in float64 (the Gram, the system, its factor)."""
    grams = min(layers, max(1, FFN_GRAM_BUDGET // (width * width * 4))) * width * width * 4
    return grams + 3 * width * width * 8


def student_layer_indices(teacher_layers: int, student_layers: int) -> list[int]:
    """The teacher's evenly spaced layers a student keeps, first and last included."""
    if student_layers >= teacher_layers:
        raise ChainError(
            f"studentLayers {student_layers} must be fewer than the teacher's {teacher_layers} "
            f"layers: use at most {teacher_layers - 1}",
            reason="InvalidDistill",
        )
    if student_layers == 1:
        return [teacher_layers - 1]
    step = (teacher_layers - 1) / (student_layers - 1)
    return [round(position * step) for position in range(student_layers)]
