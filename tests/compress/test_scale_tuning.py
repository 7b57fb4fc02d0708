"""Distillation after quantization: only scales and norms move, every integer weight stays,
the format is unchanged, and an interrupted run resumes exactly. With codeLearningRate
the codes train too, and stay on the grid."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from tests.compress.test_distill import Crash, CrashingStore, windows

from modelpress.api.steps import DistillStep, QuantizeStep
from modelpress.compress import compress_variant
from modelpress.compress.checkpoint import load_model, weights_bytes
from modelpress.compress.checkpoints import CheckpointStore
from modelpress.compress.distill import distill, kd_loss, parameter_groups
from modelpress.compress.quantize import quantize
from modelpress.compress.scale_tuning import (
    GAIN,
    SHADOW,
    quantized_linears,
    trainable,
    tuned_scales,
)
from modelpress.storage import fetch

W4 = {"scheme": "W4A16", "algorithm": "rtn", "groupSize": 64}


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
            codes = torch.round(linear.weight.detach() / wide)  # as compressed-tensors packs
            found[name] = (codes.clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1), scale)
    return found


def divergence(student, teacher, data) -> float:
    with torch.no_grad():
        return kd_loss(student(input_ids=data).logits, teacher(input_ids=data).logits, 1.0).item()


@pytest.mark.parametrize(
    ("scheme", "rate"),
    [(W4, 1e-2), ({"scheme": "W8A16", "algorithm": "rtn"}, 1e-4)],
    ids=["w4a16-g64", "w8a16-channel"],
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
    student = quantized(tiny_model, W4)
    with tuned_scales(student, torch.float32):
        trainable(student)
        trained = {n for n, p in student.named_parameters() if p.requires_grad}
        assert trained and all(n.endswith(GAIN) or "norm" in n for n in trained)
        assert sum(n.endswith(GAIN) for n in trained) == len(quantized_linears(student))
    assert all(not p.requires_grad for p in student.parameters())


def test_trained_codes_move_on_the_grid_and_are_what_saving_writes(tiny_model):
    teacher = load_model(tiny_model)
    student = quantized(tiny_model, W4)
    before = codes_and_scales(student)
    data = windows(teacher.config.vocab_size)
    untuned = divergence(student, teacher, data)
    # 48 steps at a peak of 0.04 steps of the grid: the steadiest gradients move their codes
    step = DistillStep(
        steps=48, batch_size=3, learning_rate=1e-2, temperature=1.0, code_learning_rate=0.04
    )
    with tuned_scales(student, torch.float32, train_codes=True) as report:
        trainable(student)
        trained = {n for n, p in student.named_parameters() if p.requires_grad}
        assert sum(n.endswith(SHADOW) for n in trained) == len(quantized_linears(student))
        distill(student, teacher, step, data)
    after = codes_and_scales(student)

    assert divergence(student, teacher, data) < 0.9 * untuned
    assert not any(SHADOW in n or GAIN in n for n, _ in student.named_parameters())
    moved = sum(int((after[n][0] != codes).sum()) for n, (codes, _) in before.items())
    total = sum(codes.numel() for codes, _ in before.values())
    assert 0 < moved < total / 2, f"{moved} of {total} codes moved"
    assert report == {"codesChanged": moved, "codes": total}
    for name, linear in student.named_modules():
        if name in after:  # each weight is its code times its scale: saving writes that code
            codes, scale = after[name]
            wide = scale.float().repeat_interleave(linear.in_features // scale.shape[1], dim=1)
            assert torch.equal(linear.weight, codes * wide), name
            assert int(codes.min()) >= -8 and int(codes.max()) <= 7, name


def test_shadow_codes_learn_at_their_own_rate(tiny_model):
    student = quantized(tiny_model, W4)
    step = DistillStep(learning_rate=1e-3, code_learning_rate=5e-2)
    with tuned_scales(student, torch.float32, train_codes=True):
        trainable(student)
        parameters = {n: p for n, p in student.named_parameters() if p.requires_grad}
        groups, peaks = parameter_groups(parameters, step)
    assert peaks == [1e-3, 5e-2]
    shadows = {id(p) for n, p in parameters.items() if n.endswith(SHADOW)}
    assert {id(p) for p in groups[1]["params"]} == shadows
    assert not shadows & {id(p) for p in groups[0]["params"]}
    assert parameter_groups(parameters, DistillStep(learning_rate=1e-3))[1] == [1e-3, 1e-3]


def test_an_untrained_pass_changes_nothing_that_is_saved(tiny_model):
    """Codes, scales and every other tensor stay; a weight round-to-nearest left between
    grid points is now on its grid, which is what saving stores anyway."""
    student = quantized(tiny_model, W4)
    codes = codes_and_scales(student)
    before = {n: t.clone() for n, t in student.state_dict().items() if not n.endswith(".weight")}
    with tuned_scales(student, torch.float32):
        pass
    for name, (code, scale) in codes_and_scales(student).items():
        assert torch.equal(code, codes[name][0]) and torch.equal(scale, codes[name][1]), name
    after = student.state_dict()
    for name, tensor in before.items():
        torch.testing.assert_close(after[name], tensor, atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("code_rate", [None, 0.2], ids=["scales", "scales-and-codes"])
def test_an_interrupted_tuning_resumes_where_an_uninterrupted_one_ends(
    tiny_model, tmp_path, code_rate
):
    teacher = load_model(tiny_model)
    data = windows(teacher.config.vocab_size)
    step = DistillStep(
        steps=4, batch_size=2, learning_rate=1e-2, checkpoint_every=2, code_learning_rate=code_rate
    )

    def tuned(checkpoints=None) -> tuple[torch.nn.Module, dict]:
        student = quantized(tiny_model, W4)  # a new process quantizes again, identically
        with tuned_scales(student, torch.float32, train_codes=code_rate is not None):
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


def test_a_chain_ending_in_distillation_publishes_the_same_codes_with_better_scales(
    tiny_model, store, texts, tmp_path
):
    evaluation = {"dataset": {"uri": f"file://{texts['evaluation']}"}, "samples": 4,
                  "sequenceLength": 64}  # fmt: skip
    calibration = {"dataset": {"uri": f"file://{texts['calibration']}"}, "samples": 8,
                   "sequenceLength": 64}  # fmt: skip
    plain = {"name": "w4", "quantize": W4}
    tuning = {"steps": 16, "batchSize": 2, "learningRate": 0.01, "temperature": 1.0}
    tuned = {"name": "w4-tuned", "steps": [{"quantize": W4}, {"distill": tuning}]}
    coded = {
        "name": "w4-codes",
        "steps": [{"quantize": W4}, {"distill": tuning | {"codeLearningRate": 0.2}}],
    }
    results = {}
    for variant in (plain, tuned, coded):
        out = store + f"artifacts/{variant['name']}/"
        results[variant["name"]] = compress_variant(
            str(tiny_model), variant, evaluation, out, calibration=calibration,
            work_dir=tmp_path, cache_dir=tmp_path / "cache",
        ).metadata  # fmt: skip
        fetch(out, tmp_path / f"pulled-{variant['name']}")
    a, b = packed(tmp_path / "pulled-w4"), packed(tmp_path / "pulled-w4-tuned")
    assert a.keys() == b.keys()
    for name in a:
        if name.endswith("weight_packed"):
            assert torch.equal(a[name], b[name]), name
    assert any(not torch.equal(a[n], b[n]) for n in a if n.endswith("weight_scale"))
    assert weights_bytes(tmp_path / "pulled-w4") == weights_bytes(tmp_path / "pulled-w4-tuned")
    before, after = results["w4"], results["w4-tuned"]
    assert after["weightsBytes"] == before["weightsBytes"]
    assert [s["kind"] for s in after["lineage"]] == ["quantize", "distill"]
    assert after["modelConfig"]["quantization_config"]["quant_method"] == "compressed-tensors"
    assert after["metrics"]["klDivergence"] < before["metrics"]["klDivergence"]
    # trained codes: other packed weights, in the same format and size
    c = packed(tmp_path / "pulled-w4-codes")
    assert c.keys() == a.keys()
    assert all(c[n].shape == a[n].shape and c[n].dtype == a[n].dtype for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a if n.endswith("weight_packed"))
    assert results["w4-codes"]["weightsBytes"] == before["weightsBytes"]
    assert results["w4-codes"]["lineage"][1]["details"]["codesChanged"] > 0
    assert load_model(tmp_path / "pulled-w4-codes") is not None  # loads as it was written
