"""The distillation loss, computed a slice of positions at a time.

The loss is the mean over positions of KL(teacher ‖ student) between the
temperature-softened next-token distributions, times temperature squared (Hinton et
al.), so its gradients keep their size whatever the temperature.

Written with autograd's own operations, one step makes about eight tensors the size
of the logits (a division, a log-softmax and the KL terms for each side, and their
gradients): 100 MB each for 512 positions of a 49k vocabulary. Allocations that large
are fresh pages from the kernel every time, and touching them costs more than the
arithmetic. Here the gradient, `temperature * (softmax(s/T) - softmax(t/T)) /
positions`, is known in closed form, so it is computed with the loss, slice by slice,
into the one tensor the backward pass needs anyway; the slices' temporaries are small
enough for the allocator to reuse. A scale-tuning step of the local example on 2 CPU
cores: 4.74 s -> 3.97 s, peak RSS 4.20 -> 3.84 GB (benchmarks/distill_step.py).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Elements of a slice's temporaries on a CPU (4 MiB of fp32): under the size from which
#: the C allocator hands memory straight back to the kernel once its threshold has adapted.
SLICE_ELEMENTS = 1 << 20
#: On a GPU (128 MiB of fp32), whose caching allocator reuses freed blocks anyway: large
#: enough that a batch of a 128k vocabulary takes tens of slices, not thousands of
#: kernel launches.
GPU_SLICE_ELEMENTS = 1 << 25


def rows_per_slice(device_type: str, vocabulary: int) -> int:
    """Positions whose logits one slice computes at a time."""
    elements = SLICE_ELEMENTS if device_type == "cpu" else GPU_SLICE_ELEMENTS
    return max(1, elements // vocabulary)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over positions of KL(teacher ‖ student) at `temperature`, times temperature
    squared; differentiable in `student_logits` (the teacher's are constants)."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ: the two models must share a vocabulary"
        )
    function = _tempered_forward_kl()
    return function.apply(student_logits, teacher_logits.detach(), float(temperature))


def _forward_kl_and_gradient(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, gradient: torch.Tensor
) -> torch.Tensor:
    """The summed KL(teacher ‖ student) over the rows of two [positions, vocabulary]
    logit matrices, fp32; fills `gradient` with its derivative in `student`, times
    temperature squared over the number of positions."""
    import torch

    positions, vocabulary = student.shape
    rows = rows_per_slice(student.device.type, vocabulary)
    scale = temperature / positions
    total = torch.zeros((), dtype=torch.float32, device=student.device)
    for start in range(0, positions, rows):
        part = slice(start, start + rows)
        log_q = student[part].float().div(temperature)
        log_q -= torch.logsumexp(log_q, dim=-1, keepdim=True)
        log_p = teacher[part].float().div(temperature)
        log_p -= torch.logsumexp(log_p, dim=-1, keepdim=True)
        p = log_p.exp()
        q = log_q.exp()
        log_p -= log_q  # now log(p / q)
        total += torch.sum(p * log_p)
        q -= p
        gradient[part] = q.mul_(scale)
    return total


@functools.cache
def _tempered_forward_kl() -> Any:
    """The autograd Function, made on first use: importing this module needs no torch."""
    import torch

    class TemperedForwardKL(torch.autograd.Function):
        """The loss forward; its gradient, computed in the same pass, backward."""

        @staticmethod
        def forward(ctx: Any, student: Any, teacher: Any, temperature: float) -> Any:
            shape = student.shape
            flat_student = student.reshape(-1, shape[-1])
            gradient = torch.empty(flat_student.shape, dtype=student.dtype, device=student.device)
            total = _forward_kl_and_gradient(
                flat_student, teacher.reshape(-1, shape[-1]), temperature, gradient
            )
            ctx.gradient = gradient.view(shape)
            return total * (temperature**2 / flat_student.shape[0])

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> Any:
            gradient, ctx.gradient = ctx.gradient, None
            if gradient is None:
                raise RuntimeError(
                    "kd_loss's gradient was already used: it supports one backward pass"
                )
            return gradient.mul_(grad_output.to(gradient.dtype)), None, None

    return TemperedForwardKL
