"""Structured pruning really shrinks the model, removes what matters least, and reloads."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, Qwen3Config

from modelpress.api.steps import PruneStep
from modelpress.compress.checkpoint import load_model
from modelpress.compress.prune import block_angular_distances, prune, remove_layers


def calibration(vocab: int, count: int = 4, length: int = 32) -> torch.Tensor:
    return torch.randint(0, vocab, (count, length), generator=torch.Generator().manual_seed(0))


def test_layer_drop_removes_the_block_that_changes_the_hidden_state_least(tiny_model):
    model = load_model(tiny_model)
    silent = model.model.layers[2]
    with torch.no_grad():  # a block whose residual branches add nothing
        silent.self_attn.o_proj.weight.zero_()
        silent.mlp.down_proj.weight.zero_()
    windows = calibration(model.config.vocab_size)
    distances = block_angular_distances(model, windows)
    assert distances[2] < 1e-3 < min(d for i, d in enumerate(distances) if i != 2)
    with torch.no_grad():
        before = model(input_ids=windows).logits
    details = prune(model, PruneStep(method="layer-drop", fraction=0.25), windows)
    assert details["droppedLayers"] == [2]
    assert model.config.num_hidden_layers == 3 and len(model.model.layers) == 3
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1, 2]
    with torch.no_grad():
        after = model(input_ids=windows).logits
    torch.testing.assert_close(before, after, atol=1e-4, rtol=1e-4)


def test_ffn_width_removes_dead_channels_first_and_keeps_the_output(tiny_model, tmp_path):
    model = load_model(tiny_model)
    with torch.no_grad():  # half of every MLP never activates
        for layer in model.model.layers:
            layer.mlp.up_proj.weight[::2] = 0
    windows = calibration(model.config.vocab_size)
    with torch.no_grad():
        before = model(input_ids=windows).logits
    details = prune(model, PruneStep(method="ffn-width", fraction=0.5), windows)
    assert details["intermediateSize"] == {"before": 256, "after": 128}
    for layer in model.model.layers:
        assert layer.mlp.gate_proj.weight.shape == (128, 128)
        assert layer.mlp.down_proj.weight.shape == (128, 128)
        assert layer.mlp.up_proj.weight.abs().sum(1).min() > 0  # only live channels kept
    with torch.no_grad():
        after = model(input_ids=windows).logits
    torch.testing.assert_close(before, after, atol=1e-4, rtol=1e-4)
    model.save_pretrained(tmp_path / "narrow")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "narrow")
    assert reloaded.config.intermediate_size == 128


def test_dropping_layers_rewrites_layer_types_and_the_model_still_generates(tmp_path):
    config = Qwen3Config(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=2,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    assert model.config.layer_types[2:] == ["sliding_attention"] * 2
    remove_layers(model, [1])
    assert model.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    model.save_pretrained(tmp_path / "dropped")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "dropped").eval()
    assert reloaded.config.num_hidden_layers == 3
    prompt = torch.tensor([[1, 2, 3, 4]])
    generated = reloaded.generate(prompt, max_new_tokens=5, do_sample=False)  # uses the KV cache
    assert generated.shape == (1, 9)
