"""Mixed precision: the choice under a budget (pure), the blocks and their bytes, the
measured sensitivity, and a real checkpoint that keeps its budget to the byte."""

from __future__ import annotations

import json

import pytest
import torch

from modelpress.api.steps import QuantizeStep
from modelpress.compress import CompressionError, compress_variant
from modelpress.compress.checkpoint import load_model, safetensors_header
from modelpress.compress.mixed import (
    Block,
    choose,
    find_blocks,
    measure_sensitivity,
    round_to_grid,
    rounded,
)
from modelpress.storage import fetch, read_manifest

KIB = 1024


def block(name: str, low: int, high: int, layer: int = 0) -> Block:
    return Block(name, layer, (f"{name}.proj",), low * KIB, high * KIB)


def test_choose_keeps_the_most_sensitivity_per_byte_first_and_fills_the_budget():
    blocks = [block("a", 10, 30), block("b", 10, 20), block("c", 10, 40), block("d", 10, 12)]
    sensitivity = {"a": 4.0, "b": 3.0, "c": 1.0, "d": 0.1}
    # per extra KiB: b 0.3, a 0.2, d 0.05, c 0.033; fixed 100 + low 40 = 140 KiB
    plan = choose(blocks, sensitivity, fixed_bytes=100 * KIB, budget_bytes=175 * KIB,
                  base_bytes=1000 * KIB)  # fmt: skip
    # b (+10 KiB), a (+20), d (+2) = 172 KiB; c (+30) no longer fits
    assert plan.precise == ("a", "b", "d")
    assert plan.total_bytes == 172 * KIB <= plan.budget_bytes


def test_choose_passes_over_a_block_that_no_longer_fits_for_a_cheaper_one():
    blocks = [block("big", 10, 60), block("small", 10, 12)]
    plan = choose(blocks, {"big": 10.0, "small": 0.01}, fixed_bytes=0, budget_bytes=30 * KIB,
                  base_bytes=100 * KIB)  # fmt: skip
    assert plan.precise == ("small",)
    assert (plan.smallest_bytes, plan.total_bytes, plan.largest_bytes) == (
        20 * KIB, 22 * KIB, 72 * KIB,
    )  # fmt: skip


def test_choose_keeps_everything_precise_when_the_budget_allows_it():
    blocks = [block("a", 10, 20), block("b", 10, 20)]
    plan = choose(blocks, {"a": 0.0, "b": 0.0}, fixed_bytes=0, budget_bytes=10**9,
                  base_bytes=10**9)  # fmt: skip
    assert plan.precise == ("a", "b") and plan.total_bytes == plan.largest_bytes


def test_an_unreachable_budget_says_how_far_off_it_is():
    with pytest.raises(CompressionError, match=r"budget 0.100 is below 0.200.*above 0.200"):
        choose([block("a", 20, 40)], {"a": 1.0}, fixed_bytes=0, budget_bytes=10 * KIB,
               base_bytes=100 * KIB)  # fmt: skip


def test_round_to_grid_has_at_most_sixteen_levels_per_group():
    weight = torch.randn(8, 64)
    rounded_weight = round_to_grid(weight, bits=4, group=32)
    for row in rounded_weight.reshape(8, 2, 32).reshape(16, 32):
        assert len(torch.unique(row)) <= 16
    assert (rounded_weight - weight).abs().max() < weight.abs().max() / 7


def test_zero_points_round_a_one_sided_group_onto_all_sixteen_levels():
    """Weights all above zero: the symmetric grid spends half its levels on values no
    weight has, the grid with zero points spans the group's own range."""
    weight = torch.rand(8, 64) + 0.5
    symmetric = round_to_grid(weight, bits=4, group=32)
    asymmetric = round_to_grid(weight, bits=4, group=32, zero_points=True)
    for row in asymmetric.reshape(16, 32):
        assert len(torch.unique(row)) <= 16
    assert (asymmetric - weight).abs().max() < (symmetric - weight).abs().max() / 2


def test_a_block_is_rounded_as_its_step_stores_it():
    linear = torch.nn.Linear(64, 8, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.rand(8, 64) + 0.5)
    original = linear.weight.detach().clone()
    for symmetric, zero_points in ((None, False), (False, True)):
        step = QuantizeStep(scheme="W4A16", algorithm="rtn", groupSize=32, symmetric=symmetric)
        with rounded({"proj": linear}, ("proj",), step):
            expected = round_to_grid(original, bits=4, group=32, zero_points=zero_points)
            assert torch.equal(linear.weight, expected)
        assert torch.equal(linear.weight, original)


STEP = QuantizeStep.model_validate(
    {"scheme": "W4A16", "algorithm": "rtn", "groupSize": 32, "mixedPrecision": {"budget": 0.5}}
)


def test_blocks_are_the_attention_and_mlp_of_each_layer_with_exact_bytes(tiny_model):
    model = load_model(tiny_model)
    blocks, fixed = find_blocks(model, STEP, dtype_bytes=2)
    assert [b.name for b in blocks[:2]] == ["model.layers.0.self_attn", "model.layers.0.mlp"]
    assert len(blocks) == 8 and [b.layer for b in blocks] == [0, 0, 1, 1, 2, 2, 3, 3]
    attention = blocks[0]
    assert attention.linears == tuple(
        f"model.layers.0.self_attn.{p}_proj" for p in ("q", "k", "v", "o")
    )
    # q and o 128x128, k and v 64x128: int4 packed in int32, a bf16 scale per 32 inputs,
    # an int64 (out, in) shape per weight; W8A16 per channel: int8, one scale per row.
    weights = [(128, 128), (64, 128), (64, 128), (128, 128)]
    assert attention.low_bytes == sum(o * i // 2 + o * (i // 32) * 2 + 16 for o, i in weights)
    assert attention.high_bytes == sum(o * i + o * 2 + 16 for o, i in weights)
    embedding = model.config.vocab_size * 128 * 2  # tied: lm_head is the same tensor
    norms = (2 * 4 + 1) * 128 * 2
    assert fixed == embedding + norms


def test_replaying_earlier_layers_measures_what_a_full_forward_pass_measures(tiny_model):
    """Sensitivity skips the layers before a block (their outputs are replayed); the KL
    it measures is the one a full forward pass over the rounded model gives."""
    from modelpress.compress.evaluate import kl_to_reference

    model = load_model(tiny_model)
    windows = torch.randint(0, model.config.vocab_size, (2, 48),
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
    blocks, _ = find_blocks(model, STEP, dtype_bytes=2)
    measured = measure_sensitivity(model, blocks, STEP, windows)
    late = blocks[5]  # model.layers.2.mlp: layers 0 and 1 are replayed
    with torch.no_grad():
        reference = torch.log_softmax(model(input_ids=windows).logits[:, :-1].float(), -1)
        top = reference.topk(64, dim=-1)
        with rounded(dict(model.named_modules()), late.linears, STEP):
            perturbed = torch.log_softmax(model(input_ids=windows).logits[:, :-1].float(), -1)
    full = float(kl_to_reference(perturbed, top.indices, top.values).mean())
    assert measured[late.name] == pytest.approx(full, rel=1e-4)
    assert all(value > 0 for value in measured.values())
    after = dict(model.named_parameters())
    fresh = dict(load_model(tiny_model).named_parameters())
    assert all(torch.equal(after[name], fresh[name]) for name in fresh), "weights restored"


def test_the_one_block_rounding_hurts_is_found_and_kept_precise(tiny_model, texts, tmp_path):
    """Every Linear but one is moved onto the int4 grid beforehand, so rounding it again
    loses (almost) nothing: the measurement must single out the one left off the grid and
    keep it, and the checkpoint must weigh what the plan said, to the byte."""
    model = load_model(tiny_model)
    fragile = "model.layers.2.mlp"
    with torch.no_grad():
        for name, module in model.named_modules():
            on_grid = not name.startswith(fragile) and name != "lm_head"
            if isinstance(module, torch.nn.Linear) and on_grid:
                module.weight.copy_(round_to_grid(module.weight, bits=4, group=32))
    broken = tmp_path / "on-grid"
    model.to(torch.bfloat16).save_pretrained(broken)
    for tokenizer_file in ("tokenizer.json", "tokenizer_config.json"):
        (broken / tokenizer_file).write_text((tiny_model / tokenizer_file).read_text())

    evaluation = {"dataset": {"uri": f"file://{texts['evaluation']}"}, "samples": 2,
                  "sequenceLength": 64}  # fmt: skip
    calibration = evaluation | {"dataset": {"uri": f"file://{texts['calibration']}"}}
    variant = {"name": "mixed", "quantize": {
        "scheme": "W4A16", "algorithm": "rtn", "groupSize": 32,
        "mixedPrecision": {"budget": 0.5, "sensitiveScheme": "none"}}}  # fmt: skip
    out = f"file://{tmp_path}/store/artifacts/mixed/"
    compress_variant(str(broken), variant, evaluation, out, calibration=calibration,
                     work_dir=tmp_path)  # fmt: skip

    manifest = read_manifest(out)
    assert manifest is not None
    chosen = manifest.metadata["lineage"][0]["details"]["mixedPrecision"]
    sensitivity = chosen["sensitivity"]
    others = [value for name, value in sensitivity.items() if name != fragile]
    assert sensitivity[fragile] > 20 * max(others)
    assert fragile in chosen["precise"]
    files = tmp_path / "artifact"
    fetch(out, files)
    header = safetensors_header(files / "model.safetensors")
    offsets = [entry["data_offsets"] for entry in header.values() if "data_offsets" in entry]
    tensor_bytes = sum(end - start for start, end in offsets)
    base_bytes = 2 * sum(p.numel() for p in load_model(tiny_model).parameters())
    assert tensor_bytes == chosen["predictedBytes"] <= 0.5 * base_bytes
    assert "model.layers.2.mlp.down_proj.weight" in header  # kept in bf16
    assert "model.layers.0.mlp.down_proj.weight_packed" in header
    ignore = json.loads((files / "config.json").read_text())["quantization_config"]["ignore"]
    assert "model.layers.2.mlp.down_proj" in ignore
