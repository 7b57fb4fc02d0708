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


def weights(recipe):
    return recipe[-1].config_groups["group_0"].weights


def test_weight_only_schemes_use_the_requested_group_or_channel_scales():
    w4 = build_recipe(QuantizeStep(scheme="W4A16", algorithm="rtn", group_size=64))
    assert names(w4) == ["QuantizationModifier"]
    assert (weights(w4).num_bits, weights(w4).group_size) == (4, 64)
    assert weights(w4).symmetric and weights(w4).observer == "memoryless_mse"
    w4_default = build_recipe(QuantizeStep(scheme="W4A16", algorithm="gptq"))
    assert names(w4_default) == ["GPTQModifier"] and weights(w4_default).group_size == 128
    assert weights(w4_default).observer == "imatrix_mse", "scales weighted by activations"
    w8 = build_recipe(QuantizeStep(scheme="W8A16", algorithm="gptq"))
    assert weights(w8).num_bits == 8 and weights(w8).strategy == QuantizationStrategy.CHANNEL


def test_w8a8_gptq_smooths_first_and_awq_rescales_before_rounding():
    assert names(build_recipe(QuantizeStep(scheme="W8A8", algorithm="gptq"))) == [
        "SmoothQuantModifier",
        "GPTQModifier",
    ]
    assert names(build_recipe(QuantizeStep(scheme="W8A8", algorithm="rtn"))) == [
        "QuantizationModifier"
    ]
    awq = build_recipe(QuantizeStep(scheme="W4A16", algorithm="awq", group_size=64))
    assert names(awq) == ["AWQModifier", "QuantizationModifier"]


def test_fp8_kv_cache_and_ignore_list_reach_the_modifier():
    step = QuantizeStep(
        scheme="FP8_DYNAMIC", kv_cache_scheme="fp8", ignore=["lm_head", "re:.*gate"]
    )
    (modifier,) = build_recipe(step)
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
