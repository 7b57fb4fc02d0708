"""Quantization-aware healing: the rounding it trains under, and what training under it buys."""

from __future__ import annotations

import pytest
import torch

from modelpress.api.steps import DistillStep, PruneStep, QuantizeStep
from modelpress.compress.checkpoint import load_model
from modelpress.compress.distill import distill, kd_loss
from modelpress.compress.preflight import PlannedStep
from modelpress.compress.prune import prune
from modelpress.compress.quantization_aware import rounded, rounded_as, trained_for

W4_G16 = QuantizeStep(scheme="W4A16", algorithm="rtn", groupSize=16)


@pytest.mark.parametrize(("bits", "group_size"), [(4, 16), (4, None), (8, None), (8, 32)])
def test_rounding_is_compressed_tensors_min_max_rounding(bits, group_size):
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils.helpers import calculate_qparams

    weight = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    strategy = "group" if group_size else "channel"
    args = QuantizationArgs(num_bits=bits, strategy=strategy, group_size=group_size)
    groups = weight.reshape(8, 64 // (group_size or 64), -1)
    scale, zero = calculate_qparams(groups.amin(-1), groups.amax(-1), args)
    expected = fake_quantize(weight, scale, zero, args)
    assert torch.allclose(rounded(weight, bits, group_size), expected, atol=1e-6)


def test_rounding_passes_the_gradient_through_unchanged():
    weight = torch.randn(4, 32, requires_grad=True)
    result = rounded(weight, 4, 16)
    assert result.unique().numel() <= 4 * 2 * 16  # at most 16 levels per group
    result.mul(torch.arange(32.0)).sum().backward()
    assert torch.allclose(weight.grad, torch.arange(32.0).expand(4, 32))


def test_within_the_block_the_model_computes_with_rounded_weights(tiny_model):
    model = load_model(tiny_model)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    data = torch.randint(0, model.config.vocab_size, (2, 16))
    with rounded_as(model, W4_G16) as count:
        up = model.model.layers[0].mlp.up_proj
        assert torch.equal(up.weight, rounded(before["model.layers.0.mlp.up_proj.weight"], 4, 16))
        assert count == 7 * model.config.num_hidden_layers  # every Linear but lm_head
        inside = model(input_ids=data).logits
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[name], before[name]) for name in before)
    assert not torch.allclose(inside, model(input_ids=data).logits)
    with rounded_as(model, None) as count:
        assert count == 0


def test_a_distill_step_trains_for_the_next_quantize_step_only_when_asked():
    aware = DistillStep(steps=2, quantizationAware=True)
    steps = [
        PlannedStep(0, "prune", PruneStep(method="ffn-width", fraction=0.5), None),
        PlannedStep(1, "distill", aware, None),
        PlannedStep(2, "quantize", W4_G16, None),
        PlannedStep(3, "distill", DistillStep(steps=2), None),
    ]
    assert [trained_for(steps, i) for i in range(4)] == [None, W4_G16, None, None]
    plain = PlannedStep(1, "distill", DistillStep(steps=2), None)
    assert trained_for([steps[0], plain, steps[2]], 1) is None


def rounded_distance(student, teacher, data) -> float:
    """The KL divergence from the teacher of `student` once its weights are rounded."""
    with torch.no_grad(), rounded_as(student, W4_G16):
        return kd_loss(student(input_ids=data).logits, teacher(input_ids=data).logits, 1.0).item()


def test_healing_under_the_rounding_leaves_a_model_that_rounds_better(tiny_model):
    """The same healing of a narrowed model with and without quantizationAware, each
    then rounded to W4A16 g16: the first is nearer the teacher."""
    teacher = load_model(tiny_model)
    data = torch.randint(
        0, teacher.config.vocab_size, (6, 32), generator=torch.Generator().manual_seed(1)
    )
    distances = {}
    for aware in (False, True):
        student = load_model(tiny_model)
        prune(student, PruneStep(method="ffn-width", fraction=0.5), data)
        step = DistillStep(steps=16, batch_size=3, learning_rate=1e-4, temperature=1.0)
        with rounded_as(student, W4_G16 if aware else None):
            distill(student, teacher, step, data)
        distances[aware] = rounded_distance(student, teacher, data)
    assert distances[True] < 0.8 * distances[False]
