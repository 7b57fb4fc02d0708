"""Distillation after quantization: only scales and norms move, every integer weight stays,
the format is unchanged, and an interrupted run resumes exactly."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from tests.compress.test_distill import Crash, CrashingStore, windows

from modelpress.api.steps import DistillStep, QuantizeStep
from modelpress.compress import compress_variant
from modelpress.compress.checkpoint import load_model, weights_bytes
from modelpress.compress.checkpoints import CheckpointStore
from modelpress.compress.distill import distill
from modelpress.compress.kd_loss import kd_loss
from modelpress.compress.quantize import quantize
from modelpress.compress.scale_tuning import GAIN, quantized_linears, tuned_scales
from modelpress.storage import fetch

W4 = {"scheme": "W4A16", "algorithm": "rtn", "groupSize": 64}
#: Zero points too: the levels span each group's minimum to maximum.
W4_ZERO_POINTS = W4 | {"symmetric": False}


def quantized(tiny_model, scheme: dict) -> torch.nn.Module:
    model = load_model(tiny_model)
    quantize(model, QuantizeStep.model_validate(scheme), None, base_parameters=1, dtype_bytes=4)
    return model


def codes_and_scales(model) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    found = {}
    for name, linear in model.named_modules():
        if linear in quantized_linears(model):
            scale = linear.weight_scale.detach().clone()
            wide = scale.float().repeat_interleave(linear.in_features // scale.shape[1], dim=1)
            bits = linear.quantization_scheme.weights.num_bits
            levels = linear.weight.detach() / wide
            zero_point = getattr(linear, "weight_zero_point", None)
            if zero_point is not None:  # added before rounding, as compressed-tensors does
                levels += zero_point.float().repeat_interleave(wide.shape[1] // scale.shape[1], 1)
            codes = torch.round(levels)  # as compressed-tensors packs
            found[name] = (codes.clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1), scale)
    return found


def divergence(student, teacher, data) -> float:
    with torch.no_grad():
        return kd_loss(student(input_ids=data).logits, teacher(input_ids=data).logits, 1.0).item()


@pytest.mark.parametrize(
    ("scheme", "rate"),
    [(W4, 1e-2), (W4_ZERO_POINTS, 1e-2), ({"scheme": "W8A16", "algorithm": "rtn"}, 1e-4)],
    ids=["w4a16-g64", "w4a16-g64-zero-points", "w8a16-channel"],
)
def test_tuning_moves_scales_and_norms_and_keeps_every_code(tiny_model, scheme, rate):
    teacher = load_model(tiny_model)
    student = quantized(tiny_model, scheme)
    before = codes_and_scales(student)
    norms = {n: p.detach().clone() for n, p in student.named_parameters() if "norm" in n}
    embedding = student.get_input_embeddings().weight.detach().clone()
    data = windows(teacher.config.vocab_size)
    untuned = divergence(student, teacher, data)

    step = DistillStep(steps=12, batch_size=3, learning_rate=rate, temperature=1.0)
    with tuned_scales(student, torch.float32):  # bf16 saving: the published-artifact test
        distill(student, teacher, step, data)
        assert not any(p.requires_grad for p in student.parameters())  # left frozen
    after = codes_and_scales(student)

    assert divergence(student, teacher, data) < 0.9 * untuned
    assert not any(GAIN in n for n, _ in student.named_parameters())
    for name, (codes, scale) in before.items():
        torch.testing.assert_close(after[name][0], codes, atol=0, rtol=0, msg=name)
        assert after[name][1].shape == scale.shape
    assert any(not torch.equal(after[n][1], before[n][1]) for n in before), "scales moved"
    assert any(not torch.equal(p, norms[n]) for n, p in student.named_parameters() if n in norms)
    assert torch.equal(student.get_input_embeddings().weight, embedding)


def test_only_gains_and_norms_train(tiny_model):
    from modelpress.compress.scale_tuning import trainable

    student = quantized(tiny_model, W4)
    with tuned_scales(student, torch.float32):
        trainable(student)
        trained = {n for n, p in student.named_parameters() if p.requires_grad}
        assert trained and all(n.endswith(GAIN) or "norm" in n for n in trained)
        assert sum(n.endswith(GAIN) for n in trained) == len(quantized_linears(student))
    assert all(not p.requires_grad for p in student.parameters())


@pytest.mark.parametrize("scheme", [W4, W4_ZERO_POINTS], ids=["symmetric", "zero-points"])
def test_an_untrained_pass_changes_nothing_that_is_saved(tiny_model, scheme):
    """Codes, scales, zero points and every other tensor stay; a weight round-to-nearest
    left between grid points is now on its grid, which is what saving stores anyway."""
    student = quantized(tiny_model, scheme)
    codes = codes_and_scales(student)
    before = {n: t.clone() for n, t in student.state_dict().items() if not n.endswith(".weight")}
    with tuned_scales(student, torch.float32):
        pass
    for name, (code, scale) in codes_and_scales(student).items():
        assert torch.equal(code, codes[name][0]) and torch.equal(scale, codes[name][1]), name
    after = student.state_dict()
    for name, tensor in before.items():
        torch.testing.assert_close(after[name], tensor, atol=0, rtol=0, msg=name)


def test_an_interrupted_tuning_resumes_where_an_uninterrupted_one_ends(tiny_model, tmp_path):
    teacher = load_model(tiny_model)
    data = windows(teacher.config.vocab_size)
    step = DistillStep(steps=4, batch_size=2, learning_rate=1e-2, checkpoint_every=2)

    def tuned(checkpoints=None) -> tuple[torch.nn.Module, dict]:
        student = quantized(tiny_model, W4)  # a new process quantizes again, identically
        with tuned_scales(student, torch.float32):
            details = distill(student, teacher, step, data, checkpoints=checkpoints)
        return student, details

    straight, _ = tuned()
    root = str(tmp_path / "ckpt")
    with pytest.raises(Crash):
        tuned(CrashingStore(root, "run", scratch=tmp_path))
    resumed, details = tuned(CheckpointStore(root, "run", scratch=tmp_path))
    assert details["resumedFromStep"] == 2
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_a_checkpoint_tuned_for_other_codes_starts_over(tiny_model, tmp_path):
    """A resumed Job quantizes again; where that gives other codes (other hardware), the
    gains tuned for the old ones are not applied to them: the tuning starts over."""
    teacher = load_model(tiny_model)
    data = windows(teacher.config.vocab_size)
    step = DistillStep(steps=4, batch_size=2, learning_rate=1e-2, checkpoint_every=2)

    def tuned(student, checkpoints=None) -> tuple[torch.nn.Module, dict]:
        with tuned_scales(student, torch.float32):
            details = distill(student, teacher, step, data, checkpoints=checkpoints)
        return student, details

    def requantized() -> torch.nn.Module:
        model = load_model(tiny_model)
        with torch.no_grad():
            model.model.layers[0].mlp.down_proj.weight.mul_(1.01)
        quantize(model, QuantizeStep.model_validate(W4), None, base_parameters=1, dtype_bytes=4)
        return model

    other = requantized()
    assert any(
        not torch.equal(codes, codes_and_scales(quantized(tiny_model, W4))[name][0])
        for name, (codes, _) in codes_and_scales(other).items()
    ), "the nudged model quantizes to other codes"
    root = str(tmp_path / "ckpt")
    with pytest.raises(Crash):
        tuned(quantized(tiny_model, W4), CrashingStore(root, "run", scratch=tmp_path))
    resumed, details = tuned(other, CheckpointStore(root, "run", scratch=tmp_path))
    assert details["resumedFromStep"] == 0 and details["discardedCheckpointStep"] == 2
    record = tmp_path / "ckpt" / "run" / "step-00000004" / "frozen.json"
    record.write_text("[not the record")  # damaged on the volume: not trusted, not a crash
    _, again = tuned(requantized(), CheckpointStore(root, "run", scratch=tmp_path))
    assert again["resumedFromStep"] == 0 and again["discardedCheckpointStep"] == 4
    straight, _ = tuned(requantized())
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def packed(directory) -> dict[str, torch.Tensor]:
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)


@pytest.mark.parametrize(
    ("w4", "rate"),
    # with zero points this tiny model loses little (KL 0.0002 untuned): smaller steps
    [(W4, 1e-2), (W4_ZERO_POINTS, 1e-3)],
    ids=["symmetric", "zero-points"],
)
def test_a_chain_ending_in_distillation_publishes_the_same_codes_with_better_scales(
    tiny_model, store, texts, tmp_path, w4, rate
):
    evaluation = {"dataset": {"uri": f"file://{texts['evaluation']}"}, "samples": 4,
                  "sequenceLength": 64}  # fmt: skip
    calibration = {"dataset": {"uri": f"file://{texts['calibration']}"}, "samples": 8,
                   "sequenceLength": 64}  # fmt: skip
    plain = {"name": "w4", "quantize": w4}
    tuned = {
        "name": "w4-tuned",
        "steps": [
            {"quantize": w4},
            {"distill": {"steps": 16, "batchSize": 2, "learningRate": rate, "temperature": 1.0}},
        ],
    }
    results = {}
    for variant in (plain, tuned):
        out = store + f"artifacts/{variant['name']}/"
        results[variant["name"]] = compress_variant(
            str(tiny_model), variant, evaluation, out, calibration=calibration,
            work_dir=tmp_path, cache_dir=tmp_path / "cache",
        ).metadata  # fmt: skip
        fetch(out, tmp_path / f"pulled-{variant['name']}")
    a, b = packed(tmp_path / "pulled-w4"), packed(tmp_path / "pulled-w4-tuned")
    assert a.keys() == b.keys()
    for name in a:
        if name.endswith(("weight_packed", "weight_zero_point")):
            assert torch.equal(a[name], b[name]), name
    assert any(n.endswith("weight_zero_point") for n in a) == ("symmetric" in w4)
    assert any(not torch.equal(a[n], b[n]) for n in a if n.endswith("weight_scale"))
    assert weights_bytes(tmp_path / "pulled-w4") == weights_bytes(tmp_path / "pulled-w4-tuned")
    before, after = results["w4"], results["w4-tuned"]
    assert after["weightsBytes"] == before["weightsBytes"]
    assert [s["kind"] for s in after["lineage"]] == ["quantize", "distill"]
    assert after["modelConfig"]["quantization_config"]["quant_method"] == "compressed-tensors"
    assert after["metrics"]["klDivergence"] < before["metrics"]["klDivergence"]
