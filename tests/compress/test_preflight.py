"""Checks that reject a bad request from the config alone, before any weights are read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from transformers import GPT2Config, LlamaConfig

from modelpress.api.inputs import GENERATED_CALIBRATION, Calibration
from modelpress.api.spec import Evaluation
from modelpress.api.steps import Variant
from modelpress.compress.errors import CompressionError
from modelpress.compress.preflight import check_chain, resolve_chain
from modelpress.compress.quantize import check_scheme
from modelpress.sizing.chain import (
    ChainError,
    ffn_channels_kept,
    layers_to_drop,
    student_layer_indices,
)

CALIBRATION = Calibration.model_validate({"dataset": {"uri": "file:///data/calib.txt"}})
EVALUATION = Evaluation.model_validate({"dataset": {"uri": "file:///data/eval.txt"}})


def llama(hidden: int = 128, intermediate: int = 256, layers: int = 4, **extra) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=256,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        **extra,
    )


def check(config, variant: dict, evaluation: Evaluation = EVALUATION):
    steps = resolve_chain(Variant.model_validate({"name": "v", **variant}), CALIBRATION)
    return check_chain(config, steps, evaluation)


def test_layer_drop_rounds_to_the_nearest_layer_and_keeps_at_least_one():
    assert layers_to_drop(30, 0.25) == 8  # 7.5 rounds up
    assert layers_to_drop(4, 0.25) == 1
    assert layers_to_drop(4, 0.01) == 1  # never a no-op
    with pytest.raises(ChainError, match=r"leaves no layer: use a fraction below 0\.983"):
        layers_to_drop(30, 0.99)


def test_ffn_width_keeps_multiples_of_64_and_must_remove_something():
    assert ffn_channels_kept(1536, 0.5) == 768
    assert ffn_channels_kept(1536, 0.3) == 1088  # 1075.2 -> nearest multiple of 64
    assert ffn_channels_kept(256, 0.9) == 64
    with pytest.raises(ChainError, match="removes none"):
        ffn_channels_kept(1536, 0.01)


def test_student_keeps_evenly_spaced_layers_including_first_and_last():
    assert student_layer_indices(4, 2) == [0, 3]
    picked = student_layer_indices(30, 22)
    assert picked[0] == 0 and picked[-1] == 29 and len(set(picked)) == 22
    assert picked == sorted(picked)
    with pytest.raises(ChainError, match="must be fewer than the teacher's 30 layers"):
        student_layer_indices(30, 30)


def test_group_size_that_does_not_divide_the_hidden_size_names_a_divisor():
    with pytest.raises(
        CompressionError,
        match=r"groupSize 128 does not divide the input width 576.*use groupSize 64",
    ) as caught:
        check(
            llama(hidden=576, intermediate=1536),
            {"quantize": {"scheme": "W4A16", "groupSize": 128}},
        )
    assert caught.value.reason == "InvalidGroupSize"
    check(llama(hidden=576, intermediate=1536), {"quantize": {"scheme": "W4A16", "groupSize": 64}})
    # unset, every layer gets a group size that divides it
    check(llama(hidden=576, intermediate=1536), {"quantize": {"scheme": "W4A16"}})


def test_group_size_is_checked_against_the_pruned_width():
    config = llama(intermediate=384)
    chain = {"steps": [{"prune": {"method": "ffn-width", "fraction": 0.5}}]}
    assert check(config, chain).intermediate_size == 192
    chain["steps"].append({"quantize": {"scheme": "W4A16", "groupSize": 128}})
    with pytest.raises(CompressionError, match=r"step 2 \(quantize\).*input width 192"):
        check(config, chain)


def test_ignored_modules_are_not_held_to_the_group_size():
    config = llama(hidden=576, intermediate=1536)
    with pytest.raises(CompressionError):
        check(config, {"quantize": {"scheme": "W8A16", "groupSize": 128}})
    variant = {"quantize": {"scheme": "W8A16", "groupSize": 128, "ignore": ["lm_head", "re:.*"]}}
    check(config, variant)


def test_per_channel_schemes_reject_a_group_size():
    with pytest.raises(CompressionError, match="FP8_DYNAMIC uses one scale per output channel"):
        check_scheme(
            Variant.model_validate(
                {
                    "name": "v",
                    "quantize": {"scheme": "FP8_DYNAMIC", "algorithm": "rtn", "groupSize": 64},
                }
            ).quantize
        )


def test_architecture_without_decoder_layers_is_rejected_for_pruning():
    gpt2 = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=128)
    for method in ("ffn-width", "layer-drop"):
        with pytest.raises(CompressionError, match=r"model\.layers") as caught:
            check(gpt2, {"prune": {"method": method, "fraction": 0.5}})
        assert caught.value.reason == "UnsupportedArchitecture"


def test_distill_first_needs_a_smaller_student_and_later_must_not_name_one():
    with pytest.raises(ValidationError, match="needs studentLayers"):
        check(llama(), {"distill": {"steps": 2}})
    with pytest.raises(CompressionError, match="fewer than the teacher's 4 layers"):
        check(llama(), {"distill": {"steps": 2, "studentLayers": 4}})
    assert check(llama(), {"distill": {"steps": 2, "studentLayers": 2}}).num_hidden_layers == 2
    chain = {
        "steps": [
            {"prune": {"method": "layer-drop", "fraction": 0.25}},
            {"distill": {"studentLayers": 2}},
        ]
    }
    with pytest.raises(
        ValidationError, match=r"studentLayers applies only when distill is the first"
    ):
        check(llama(), chain)


def test_steps_that_learn_without_calibration_learn_from_generated_text():
    variant = Variant.model_validate(
        {"name": "v", "prune": {"method": "layer-drop", "fraction": 0.5}}
    )
    assert resolve_chain(variant, None)[0].calibration == GENERATED_CALIBRATION
    own = Calibration.model_validate({"dataset": {"uri": "file:///data/calib.txt"}})
    assert resolve_chain(variant, own)[0].calibration == own
    rtn = Variant.model_validate({"name": "v", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}})
    assert resolve_chain(rtn, None)[0].calibration is None


def test_sequence_longer_than_the_model_positions_is_rejected():
    evaluation = Evaluation.model_validate(
        {"dataset": {"uri": "file:///e.txt"}, "sequenceLength": 2048}
    )
    with pytest.raises(
        CompressionError, match="evaluation sequenceLength 2048 exceeds the model's 1024"
    ):
        check(llama(), {"quantize": {"scheme": "W8A16", "algorithm": "rtn"}}, evaluation)
