"""Quantization-aware healing: a distill step that trains on the weights as they will be
rounded (`quantizationAware`).

Each Linear the chain's quantize step will quantize gets a parametrization that rounds
its weight onto that step's integer grid (symmetric, its group sizes, each group's scale
its largest magnitude over half the grid's range, as compressed-tensors computes it)
with the gradient of the identity (straight-through). The full-precision weights still
learn, so training moves them where rounding costs least; on leaving, they are the
weights again, for the quantize step to round.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from modelpress.api.steps import DistillStep, QuantizeStep

if TYPE_CHECKING:
    import torch

    from modelpress.compress.preflight import PlannedStep

log = logging.getLogger(__name__)


def rounded(weight: torch.Tensor, bits: int, group_size: int | None) -> torch.Tensor:
    """`weight` rounded onto a symmetric `bits`-bit grid with one scale per `group_size`
    inputs (None: per output channel); the gradient passes through as if unrounded."""
    rows, columns = weight.shape
    grouped = weight.reshape(rows, columns // (group_size or columns), -1)
    largest = 2 ** (bits - 1) - 1
    scale = (grouped.detach().abs().amax(-1, keepdim=True) / (largest + 0.5)).clamp_min(1e-12)
    steps = grouped / scale
    on_grid = steps.round().clamp(-largest - 1, largest)
    return ((steps + (on_grid - steps).detach()) * scale).reshape(rows, columns)


def trained_for(steps: Sequence[PlannedStep], index: int) -> QuantizeStep | None:
    """The quantize step whose rounding the distill step at `index` trains under: the
    chain's next one when that step is quantizationAware, else None."""
    action = steps[index].action
    if not isinstance(action, DistillStep) or not action.quantization_aware:
        return None
    return next((p.action for p in steps[index + 1 :] if isinstance(p.action, QuantizeStep)), None)


@contextlib.contextmanager
def rounded_as(model: torch.nn.Module, step: QuantizeStep | None) -> Iterator[int]:
    """Within the block, the Linears `step` quantizes compute with rounded weights; yields
    how many. With no step, nothing changes (and 0)."""
    if step is None:
        yield 0
        return
    import torch
    from torch.nn.utils import parametrize

    from modelpress.compress.quantize import describe_groups, linear_widths

    bits = 8 if step.scheme == "W8A16" else 4

    class Rounding(torch.nn.Module):
        """A parametrization: the Linear's weight as the quantize step will round it."""

        def __init__(self, group_size: int | None) -> None:
            super().__init__()
            self.group_size = group_size

        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            return rounded(weight, bits, self.group_size)

    modules = dict(model.named_modules())
    widths = linear_widths(model, step.ignore)
    for name, width in widths.items():
        rounding = Rounding(step.group_size_for(width))
        parametrize.register_parametrization(modules[name], "weight", rounding)
    log.info(
        "distill: training on the weights as %s will round them (%s Linears)",
        f"{step.scheme} with {describe_groups(step, widths)}",
        len(widths),
    )
    try:
        yield len(widths)
    finally:
        for name in widths:
            parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=False)
