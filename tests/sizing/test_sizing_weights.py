"""predict_weights_bytes: 16-bit sizes, compressed-tensors packing, and real llmcompressor output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.sizing.known_models import PUBLISHED_PARAMETERS, shape_of

from modelpress.api.steps import QuantizeStep
from modelpress.sizing import ModelShape, SizingError, predict_weights_bytes
from modelpress.sizing.schemes import SCHEMES, linear_weight_bytes, weight_group_sizes


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_bf16_weights_are_parameters_times_two(name: str) -> None:
    predicted = predict_weights_bytes(shape_of(name), "bf16")
    expected = PUBLISHED_PARAMETERS[name] * 2
    assert abs(predicted - expected) / expected < 0.01


def test_w4a16_packs_eight_values_per_int32_and_a_scale_per_group() -> None:
    # down_proj of Llama-3.1-8B: 4096 x 14336
    size = linear_weight_bytes(4096, 14336, SCHEMES["W4A16"], 128)
    assert size == 4096 * 14336 // 2 + 4096 * (14336 // 128) * 2 + 16


def test_w8a16_default_is_per_channel_as_the_quantize_step_writes_it() -> None:
    shape = shape_of("Llama-3.1-8B-Instruct")
    default = predict_weights_bytes(shape, "W8A16")
    grouped = predict_weights_bytes(shape, "W8A16", group_size=128)
    assert default == predict_weights_bytes(shape, "W8A16", group_size=-1) < grouped
    step = QuantizeStep(scheme="W8A16")
    assert {step.group_size_for(width) for width in (4096, 14336)} == {None}


def test_quantized_llama_8b_keeps_embeddings_and_lm_head_in_16_bit() -> None:
    shape = shape_of("Llama-3.1-8B-Instruct")
    embeddings = 2 * 128256 * 4096 * 2
    linear = sum(w.out_features * w.in_features * w.count for w in shape.linear_weights())
    w4 = predict_weights_bytes(shape, "W4A16")
    # 4 bits per weight plus a 16-bit scale per 128 weights: 4.125 bits
    assert w4 - embeddings == pytest.approx(linear * 4.125 / 8, rel=0.001)
    w8 = predict_weights_bytes(shape, "W8A8")
    assert w8 - embeddings == pytest.approx(linear, rel=0.001)


def test_schemes_order_by_size() -> None:
    shape = shape_of("Mixtral-8x7B")
    sizes = [predict_weights_bytes(shape, s) for s in ("bf16", "FP8_DYNAMIC", "W4A16")]
    assert sizes == sorted(sizes, reverse=True)


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(SizingError, match="W4A16"):
        predict_weights_bytes(shape_of("SmolLM2-135M"), "W3A5")


def test_group_size_on_per_channel_scheme_rejected() -> None:
    with pytest.raises(SizingError, match="no group size"):
        predict_weights_bytes(shape_of("SmolLM2-135M"), "FP8_DYNAMIC", group_size=128)


def test_group_size_must_divide_every_input_width() -> None:
    smol = shape_of("SmolLM2-135M")  # hidden size 576 = 4.5 groups of 128
    with pytest.raises(SizingError, match=r"does not divide the Linear input widths \[576\]"):
        predict_weights_bytes(smol, "W4A16", group_size=128)
    assert predict_weights_bytes(smol, "W4A16", group_size=64) < predict_weights_bytes(
        smol, "W8A16", group_size=-1
    )


def test_unset_group_size_takes_128_where_it_divides_a_width_and_64_elsewhere() -> None:
    smol = shape_of("SmolLM2-135M")
    assert weight_group_sizes(smol, SCHEMES["W4A16"]) == {576: 64, 1536: 128}
    default, g64 = predict_weights_bytes(smol, "W4A16"), predict_weights_bytes(smol, "W4A16", 64)
    down_proj_weights = 30 * 576 * 1536
    # groups of 128 on down_proj halve its scales: one bf16 scale saved per 128 weights
    assert g64 - default == down_proj_weights // 128 * 2
    assert weight_group_sizes(smol, SCHEMES["W4A16"], -1) == {576: None, 1536: None}


def test_nonpositive_group_size_rejected() -> None:
    with pytest.raises(SizingError, match="positive"):
        predict_weights_bytes(shape_of("SmolLM2-135M"), "W4A16", group_size=0)


def _tiny_checkpoint(tmp_path: Path, **shape: object) -> Path:
    """Save a random bf16 Llama of the given dimensions; return its directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dimensions: dict[str, object] = {
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        **shape,
    }
    torch.manual_seed(0)
    base = tmp_path / "base"
    LlamaForCausalLM(LlamaConfig(**dimensions)).to(torch.bfloat16).save_pretrained(base)
    return base


def _safetensors_bytes(directory: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                tensor = handle.get_tensor(key)
                total += tensor.numel() * tensor.element_size()
    return total


SLOW = pytest.mark.slow
#: llmcompressor's W8A16 preset groups by 128, where a quantize step's W8A16 (the
#: prediction's default) keeps one scale per output channel.
PRESET_GROUP_SIZES = {"W8A16": 128}


@pytest.mark.parametrize(
    "scheme",
    [
        "W4A16",
        "W8A16",
        pytest.param("W4A16_ASYM", marks=SLOW),
        pytest.param("W8A8", marks=SLOW),
        pytest.param("FP8_DYNAMIC", marks=SLOW),
    ],
)
def test_prediction_equals_llmcompressor_tensor_bytes(scheme: str, tmp_path: Path) -> None:
    """Quantize a tiny random Llama with round-to-nearest and weigh every tensor."""
    pytest.importorskip("llmcompressor")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    base = _tiny_checkpoint(tmp_path)
    out = tmp_path / scheme
    oneshot(
        model=str(base),
        recipe=QuantizationModifier(targets="Linear", scheme=scheme, ignore=["lm_head"]),
        output_dir=str(out),
    )

    base_shape = ModelShape.from_config(json.loads((base / "config.json").read_text()))
    actual = _safetensors_bytes(out)
    preset_group = PRESET_GROUP_SIZES.get(scheme)
    assert predict_weights_bytes(base_shape, scheme, preset_group) == actual
    compressed_shape = ModelShape.from_config(json.loads((out / "config.json").read_text()))
    assert predict_weights_bytes(compressed_shape, scheme) == actual


@pytest.mark.parametrize(("bits", "group_size"), [(4, 64), pytest.param(8, -1, marks=SLOW)])
def test_prediction_for_smollm2_widths_and_custom_groups(
    bits: int, group_size: int, tmp_path: Path
) -> None:
    """SmolLM2's widths (576 hidden, 9 heads, tied embeddings) with explicit groups."""
    pytest.importorskip("llmcompressor")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    base = _tiny_checkpoint(
        tmp_path,
        hidden_size=576,
        intermediate_size=1536,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    weights: dict[str, object] = {"num_bits": bits, "type": "int", "symmetric": True}
    if group_size > 0:
        weights |= {"strategy": "group", "group_size": group_size}
    else:
        weights |= {"strategy": "channel"}
    out = tmp_path / "out"
    oneshot(
        model=str(base),
        recipe=QuantizationModifier(
            config_groups={"group_0": {"targets": ["Linear"], "weights": weights}},
            ignore=["lm_head"],
        ),
        output_dir=str(out),
    )
    shape = ModelShape.from_config(json.loads((base / "config.json").read_text()))
    scheme = "W4A16" if bits == 4 else "W8A16"
    assert predict_weights_bytes(shape, scheme, group_size) == _safetensors_bytes(out)
