"""ModelShape reads real config.json files and counts parameters like PyTorch does."""

from __future__ import annotations

import pytest
from tests.sizing.known_models import PUBLISHED_PARAMETERS, load

from modelpress.sizing import ModelShape, SizingError


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_parameter_count_matches_published(name: str) -> None:
    shape = ModelShape.from_config(load(name))
    assert shape.parameter_count() == PUBLISHED_PARAMETERS[name]


def test_llama_fields() -> None:
    shape = ModelShape.from_config(load("Llama-3.1-8B-Instruct"))
    assert (shape.num_hidden_layers, shape.num_attention_heads, shape.num_key_value_heads) == (
        32,
        32,
        8,
    )
    assert shape.head_dim == 128
    assert shape.max_position_embeddings == 131072
    assert not shape.tie_word_embeddings
    assert shape.sliding_window is None and shape.sliding_window_layers == 0


def test_qwen2_has_qkv_bias_and_disabled_sliding_window() -> None:
    shape = ModelShape.from_config(load("Qwen2.5-7B"))
    assert shape.qkv_bias and not shape.o_proj_bias
    assert shape.sliding_window is None  # use_sliding_window: false


def test_mixtral_experts() -> None:
    shape = ModelShape.from_config(load("Mixtral-8x7B"))
    assert (shape.num_experts, shape.num_experts_per_token) == (8, 2)
    assert shape.expert_intermediate_size == 14336


def test_tied_embeddings_counted_once() -> None:
    config = load("SmolLM2-135M")
    tied = ModelShape.from_config(config)
    untied = ModelShape.from_config({**config, "tie_word_embeddings": False})
    assert untied.parameter_count() - tied.parameter_count() == 49152 * 576


def test_kv_heads_default_to_attention_heads() -> None:
    config = {k: v for k, v in load("SmolLM2-135M").items() if k != "num_key_value_heads"}
    assert ModelShape.from_config(config).num_key_value_heads == 9


def test_sliding_window_on_every_layer_by_default() -> None:
    config = {**load("Mistral-7B-v0.3"), "sliding_window": 4096}
    shape = ModelShape.from_config(config)
    assert (shape.sliding_window, shape.sliding_window_layers) == (4096, 32)


def test_qwen_sliding_window_after_max_window_layers() -> None:
    config = {**load("Qwen2.5-7B"), "use_sliding_window": True, "sliding_window": 4096}
    config["max_window_layers"] = 20
    shape = ModelShape.from_config(config)
    assert (shape.sliding_window, shape.sliding_window_layers) == (4096, 8)


def test_layer_types_decide_sliding_layers() -> None:
    config = {**load("Mistral-7B-v0.3"), "sliding_window": 1024}
    config["layer_types"] = ["sliding_attention", "full_attention"] * 16
    assert ModelShape.from_config(config).sliding_window_layers == 16


def test_multimodal_text_config_is_used() -> None:
    config = {"model_type": "llava", "text_config": load("Mistral-7B-v0.3")}
    assert ModelShape.from_config(config).hidden_size == 4096


def _grouped(size: int, *targets: str) -> dict[str, object]:
    return {"targets": list(targets), "weights": {"strategy": "group", "group_size": size}}


def _groups_of(quantization: dict[str, object]) -> dict[int, int]:
    config = {**load("SmolLM2-135M"), "quantization_config": quantization}
    return ModelShape.from_config(config).weight_group_sizes


def test_group_size_from_compressed_tensors_config() -> None:
    quantization = {
        "quant_method": "compressed-tensors",
        "config_groups": {"group_0": {"weights": {"strategy": "group", "group_size": 64}}},
    }
    assert _groups_of(quantization) == {576: 64, 1536: 64}


@pytest.mark.parametrize(
    "down_proj",
    [
        [f"model.layers.{i}.mlp.down_proj" for i in range(30)],  # as modelpress writes it
        ["re:.*down_proj$"],
        ["re:model.layers.*mlp.down_proj"],
    ],
)
def test_a_named_group_wins_over_the_linear_class(down_proj: list[str]) -> None:
    """The default W4A16 groups: 128 on down_proj (1,536 inputs), 64 on the rest."""
    schemes = {"group_0": _grouped(64, "Linear"), "group_1": _grouped(128, *down_proj)}
    assert _groups_of({"config_groups": schemes}) == {576: 64, 1536: 128}


def test_per_channel_and_unquantized_widths_have_no_group() -> None:
    per_channel = {"targets": ["Linear"], "weights": {"strategy": "channel"}}
    schemes = {"group_0": per_channel, "group_1": _grouped(128, "re:.*down_proj")}
    assert _groups_of({"config_groups": schemes}) == {1536: 128}
    assert _groups_of({"config_groups": {"group_0": per_channel}}) == {}
    assert _groups_of({"quant_method": "fp8"}) == {}


def test_gptq_and_awq_configs_give_one_group_size_for_every_width() -> None:
    assert _groups_of({"quant_method": "gptq", "group_size": 128}) == {576: 128, 1536: 128}


def test_missing_key_names_it() -> None:
    config = {k: v for k, v in load("SmolLM2-135M").items() if k != "vocab_size"}
    with pytest.raises(SizingError, match="vocab_size"):
        ModelShape.from_config(config)


def test_inconsistent_heads_rejected() -> None:
    with pytest.raises(SizingError, match="multiple of num_key_value_heads"):
        ModelShape.from_config({**load("SmolLM2-135M"), "num_key_value_heads": 4})


def test_latent_attention_rejected() -> None:
    with pytest.raises(SizingError, match="latent attention"):
        ModelShape.from_config({**load("Mistral-7B-v0.3"), "kv_lora_rank": 512})


def test_a_group_named_on_the_experts_holds_the_expert_width() -> None:
    """Qwen3-235B-A22B: experts 1,536 wide, attention output 8,192 (64 x 128)."""
    config = load("Qwen3-235B-A22B")
    schemes = {
        "group_0": _grouped(128, "Linear"),
        "group_1": _grouped(32, "model.layers.7.mlp.experts.93.down_proj"),
    }
    shape = ModelShape.from_config({**config, "quantization_config": {"config_groups": schemes}})
    assert shape.weight_group_sizes[shape.expert_intermediate_size] == 32
    assert shape.weight_group_sizes[shape.num_attention_heads * shape.head_dim] == 128


def test_a_group_on_layers_it_cannot_place_counts_at_every_width() -> None:
    """Mixtral names its experts' projections w1/w2/w3: a scheme on `w2` may hold any
    width, so its larger group is taken everywhere (stricter, never looser)."""
    schemes = {"group_0": _grouped(64, "Linear"), "group_1": _grouped(128, "re:.*w2$")}
    shape = ModelShape.from_config(
        {**load("Mixtral-8x7B"), "quantization_config": {"config_groups": schemes}}
    )
    assert set(shape.weight_group_sizes.values()) == {128}


@pytest.mark.parametrize(
    "targets",
    [["re:[unclosed"], 5, {"layers": "down_proj"}],
    ids=["pattern-that-does-not-compile", "a-number", "a-mapping"],
)
def test_a_hostile_target_counts_at_every_width_and_breaks_nothing(targets: object) -> None:
    """An artifact's config comes from a manifest anyone with store access may write."""
    schemes = {"group_0": _grouped(64, "Linear"), "group_1": _grouped(128)}
    schemes["group_1"]["targets"] = targets
    assert _groups_of({"config_groups": schemes}) == {576: 128, 1536: 128}


def test_a_boolean_group_size_is_no_group_size() -> None:
    assert _groups_of({"config_groups": {"group_0": _grouped(True, "Linear")}}) == {}
    assert _groups_of({"quant_method": "gptq", "group_size": True}) == {}
