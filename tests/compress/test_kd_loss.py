"""The distillation loss: its value, and the gradient it computes in closed form."""

from __future__ import annotations

import pytest
import torch

from modelpress.compress import kd_loss as module
from modelpress.compress.kd_loss import kd_loss


def autograd_kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float):
    """The loss written with autograd's own operations, as PyTorch's docs give it."""
    vocab = student.shape[-1]
    log_q = torch.log_softmax(student.reshape(-1, vocab).float() / temperature, -1)
    log_p = torch.log_softmax(teacher.reshape(-1, vocab).float() / temperature, -1)
    kl = torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    return kl * temperature**2


def logits(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_kd_loss_is_temperature_scaled_forward_kl():
    student, teacher = logits(2, 3, 7, seed=0), logits(2, 3, 7, seed=1)
    assert kd_loss(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    p = torch.softmax(teacher / 2.0, -1)
    expected = (p * (p.log() - torch.log_softmax(student / 2.0, -1))).sum(-1).mean() * 4.0
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_the_gradient_equals_autograds_across_slices(monkeypatch, temperature):
    # 3 x 5 positions of a 11-token vocabulary, 2 positions per slice: the last slice is short
    monkeypatch.setattr(module, "SLICE_ELEMENTS", 22)
    teacher = logits(3, 5, 11, seed=2)
    ours = logits(3, 5, 11, seed=3).requires_grad_()
    theirs = ours.detach().clone().requires_grad_()
    loss = kd_loss(ours, teacher, temperature)
    expected = autograd_kd_loss(theirs, teacher, temperature)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    (loss * 3).backward()  # the upstream gradient scales it
    (expected * 3).backward()
    assert ours.grad.shape == ours.shape
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-7)


def test_slices_are_small_on_a_cpu_and_large_on_a_gpu():
    assert module.rows_per_slice("cpu", 49152) == 21  # 4 MiB of fp32 per temporary
    assert module.rows_per_slice("cuda", 128256) == 261
    assert module.rows_per_slice("cpu", 1 << 21) == 1, "at least a position"


def test_a_bf16_student_gets_a_bf16_gradient_computed_in_fp32():
    teacher = logits(4, 13, seed=4).bfloat16()
    student = logits(4, 13, seed=5).bfloat16().requires_grad_()
    reference = student.detach().float().requires_grad_()
    loss = kd_loss(student, teacher, 1.0)
    assert loss.dtype == torch.float32
    loss.backward()
    autograd_kd_loss(reference, teacher.float(), 1.0).backward()
    assert student.grad.dtype == torch.bfloat16
    torch.testing.assert_close(student.grad.float(), reference.grad, rtol=2e-2, atol=1e-4)


def test_the_teacher_learns_nothing_and_stays_as_it_was():
    teacher = logits(2, 4, 9, seed=6).requires_grad_()
    kept = teacher.detach().clone()
    kd_loss(logits(2, 4, 9, seed=7).requires_grad_(), teacher, 1.0).backward()
    assert teacher.grad is None
    assert torch.equal(teacher.detach(), kept)


def test_a_second_backward_pass_says_what_went_wrong():
    student = logits(2, 5, seed=8).requires_grad_()
    loss = kd_loss(student, logits(2, 5, seed=9), 1.0)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass"):
        loss.backward()


def test_logits_of_two_vocabularies_are_refused():
    with pytest.raises(ValueError, match="share a vocabulary"):
        kd_loss(torch.zeros(2, 5), torch.zeros(2, 6), 1.0)
