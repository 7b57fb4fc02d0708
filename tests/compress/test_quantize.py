"""Quantization recipes, and a real compressed-tensors round trip on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from compressed_tensors.quantization import QuantizationStrategy

from modelpress.api.steps import QuantizeStep
from modelpress.compress.checkpoint import load_model, load_tokenizer, safetensors_header
from modelpress.compress.quantize import build_recipe, quantize, save_quantized


def names(recipe) -> list[str]:
    return [type(modifier).__name__ for modifier in recipe]


#: One decoder layer of SmolLM2-135M: 576 wide, its MLP 1,536 (input widths by name).
SMOL_LAYER = {
    **{f"model.layers.0.self_attn.{p}_proj": 576 for p in "qkvo"},
    "model.layers.0.mlp.gate_proj": 576,
    "model.layers.0.mlp.up_proj": 576,
    "model.layers.0.mlp.down_proj": 1536,
}
DOWN = "model.layers.0.mlp.down_proj"
WIDE = {name: 4096 for name in SMOL_LAYER}


def weights(recipe, group="group_0"):
    return recipe[-1].config_groups[group].weights


def groups(recipe) -> dict[str, tuple[list[str], int, int | None]]:
    return {
        key: (scheme.targets, scheme.weights.num_bits, scheme.weights.group_size)
        for key, scheme in recipe[-1].config_groups.items()
    }


def test_weight_only_schemes_use_the_requested_group_or_channel_scales():
    w4 = build_recipe(QuantizeStep(scheme="W4A16", algorithm="rtn", group_size=64), SMOL_LAYER)
    assert names(w4) == ["QuantizationModifier"]
    assert groups(w4) == {"group_0": (["Linear"], 4, 64)}
    assert weights(w4).symmetric and weights(w4).observer == "memoryless_mse"
    w4_default = build_recipe(QuantizeStep(scheme="W4A16", algorithm="gptq"), WIDE)
    assert names(w4_default) == ["GPTQModifier"]
    assert groups(w4_default) == {"group_0": (["Linear"], 4, 128)}
    assert weights(w4_default).observer == "imatrix_mse", "scales weighted by activations"
    w8 = build_recipe(QuantizeStep(scheme="W8A16", algorithm="gptq"), SMOL_LAYER)
    assert weights(w8).num_bits == 8 and weights(w8).strategy == QuantizationStrategy.CHANNEL
    assert len(groups(w8)) == 1


def test_w4a16_default_keeps_128_where_it_divides_and_names_the_layers_it_does_not_cover():
    """SmolLM2's 576-wide inputs take groups of 64, its 1,536-wide MLP input 128; the
    commonest size targets the class, the other names its layers (matched first)."""
    step = QuantizeStep(scheme="W4A16", algorithm="gptq")
    assert groups(build_recipe(step, SMOL_LAYER)) == {
        "group_0": (["Linear"], 4, 64),
        "group_1": ([DOWN], 4, 128),
    }
    odd = {"a": 96, "b": 100}  # 96: groups of 32; 100: none of 128, 64, 32 divides it
    recipe = build_recipe(step, odd)
    assert groups(recipe) == {"group_0": (["Linear"], 4, 32), "group_1": (["b"], 4, None)}
    assert weights(recipe, "group_1").strategy == QuantizationStrategy.CHANNEL


def test_mixed_precision_layers_leave_the_group_size_lists():
    from modelpress.api.steps import MixedPrecision

    step = QuantizeStep(scheme="W4A16", mixed_precision=MixedPrecision(budget=0.5))
    assert groups(build_recipe(step, SMOL_LAYER, precise=(DOWN,))) == {
        "group_0": (["Linear"], 4, 64),
        "group_1": ([DOWN], 8, None),
    }


def test_w8a8_gptq_smooths_first_and_awq_rescales_before_rounding():
    assert names(build_recipe(QuantizeStep(scheme="W8A8", algorithm="gptq"), WIDE)) == [
        "SmoothQuantModifier",
        "GPTQModifier",
    ]
    assert names(build_recipe(QuantizeStep(scheme="W8A8", algorithm="rtn"), WIDE)) == [
        "QuantizationModifier"
    ]
    awq = build_recipe(QuantizeStep(scheme="W4A16", algorithm="awq", group_size=64), WIDE)
    assert names(awq) == ["AWQModifier", "QuantizationModifier"]


def test_fp8_kv_cache_and_ignore_list_reach_the_modifier():
    step = QuantizeStep(
        scheme="FP8_DYNAMIC", kv_cache_scheme="fp8", ignore=["lm_head", "re:.*gate"]
    )
    (modifier,) = build_recipe(step, WIDE)
    assert modifier.kv_cache_scheme.num_bits == 8 and modifier.kv_cache_scheme.type == "float"
    assert modifier.ignore == ["lm_head", "re:.*gate"]
    assert modifier.config_groups["group_0"].input_activations.dynamic


def relative_error(logits: torch.Tensor, reference: torch.Tensor) -> float:
    return ((logits - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize(
    ("scheme", "group", "packed_bits", "tolerance"),
    [("W4A16", 32, 4, 0.5), ("W8A16", None, 8, 0.05)],
)
def test_saved_checkpoint_is_packed_and_reloads_as_good_as_the_quantized_model(
    tiny_model, tmp_path, scheme, group, packed_bits, tolerance
):
    """The reloaded checkpoint (what vLLM loads) is as close to the original as the
    in-memory fake-quantized model; saving in bf16 costs nothing measurable."""
    model = load_model(tiny_model)
    data = torch.randint(
        0, model.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        before = model(input_ids=data).logits
    step = QuantizeStep(scheme=scheme, algorithm="rtn", group_size=group)
    quantize(model, step, None, base_parameters=0, dtype_bytes=2)
    with torch.no_grad():
        fake_error = relative_error(model(input_ids=data).logits, before)
    out = tmp_path / "q"
    save_quantized(model, load_tokenizer(tiny_model), out, torch.bfloat16, reshaped=False)

    header = safetensors_header(out / "model.safetensors")
    q_proj = "model.layers.0.self_attn.q_proj"
    assert header[f"{q_proj}.weight_packed"]["dtype"] == "I32"
    assert header[f"{q_proj}.weight_packed"]["shape"] == [128, 128 * packed_bits // 32]
    assert header[f"{q_proj}.weight_scale"]["dtype"] == "BF16"
    assert f"{q_proj}.weight" not in header
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    assert config["quantization_config"]["ignore"] == ["lm_head"]

    reloaded = load_model(out)
    with torch.no_grad():
        after = reloaded(input_ids=data).logits
    saved_error = relative_error(after, before)
    assert 0 < saved_error < tolerance
    assert saved_error < 1.2 * fake_error


@pytest.mark.parametrize("symmetric", [None, False], ids=["symmetric", "zero-points"])
def test_default_w4a16_groups_each_layer_by_its_width_and_sizing_predicts_it_exactly(
    tmp_path, tiny_tokenizer, symmetric
):
    """A 192-wide model with a 256-wide MLP: 128 divides only the MLP input, so the
    other layers take 64. The checkpoint holds both groups (and, asymmetric, a zero point
    per group), weighs what sizing predicted to the byte, and reloads (as vLLM does) as
    close as it was quantized."""
    from tests.compress.conftest import build_model

    from modelpress.sizing import ModelShape, predict_weights_bytes

    base = build_model(tmp_path / "base", tiny_tokenizer, hidden_size=192, layers=2)
    model = load_model(base)
    data = torch.randint(
        0, model.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        before = model(input_ids=data).logits
    step = QuantizeStep(scheme="W4A16", algorithm="rtn", symmetric=symmetric)
    quantize(model, step, None, base_parameters=0, dtype_bytes=2)
    out = tmp_path / "q"
    save_quantized(model, load_tokenizer(base), out, torch.bfloat16, reshaped=False)

    header = safetensors_header(out / "model.safetensors")
    layer = "model.layers.0"
    assert header[f"{layer}.self_attn.q_proj.weight_scale"]["shape"] == [192, 192 // 64]
    assert header[f"{layer}.mlp.up_proj.weight_scale"]["shape"] == [256, 192 // 64]
    assert header[f"{layer}.mlp.down_proj.weight_scale"]["shape"] == [192, 256 // 128]
    zero_points = f"{layer}.mlp.down_proj.weight_zero_point"
    assert (zero_points in header) == (symmetric is False)
    if symmetric is False:  # eight 4-bit zero points per int32, along the outputs
        assert header[zero_points]["shape"] == [192 // 8, 256 // 128]
    groups = json.loads((out / "config.json").read_text())["quantization_config"]["config_groups"]
    assert {key: (g["targets"], g["weights"]["group_size"]) for key, g in groups.items()} == {
        "group_0": (["Linear"], 64),
        "group_1": ([f"model.layers.{i}.mlp.down_proj" for i in range(2)], 128),
    }
    stored = sum(
        entry["data_offsets"][1] - entry["data_offsets"][0]
        for name, entry in header.items()
        if name != "__metadata__"
    )
    shape = ModelShape.from_config(json.loads((base / "config.json").read_text()))
    assert predict_weights_bytes(shape, step.stored_scheme) == stored
    served = ModelShape.from_config(json.loads((out / "config.json").read_text()))
    assert served.weight_group_sizes == {192: 64, 256: 128}, "each layer's own group, read back"

    with torch.no_grad():
        after = load_model(out)(input_ids=data).logits
    assert 0 < relative_error(after, before) < 0.5
