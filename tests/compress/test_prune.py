"""Structured pruning really shrinks the model, removes what matters least, and reloads."""

from __future__ import annotations

import pytest
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


def test_the_refit_is_least_squares_pulled_toward_the_sliced_weights():
    """refit_down_proj solves min ||A_K X^T - A W^T||^2 + lambda ||X - W_K||^2 exactly:
    the same X as a least-squares solve on the stacked system, and never a larger
    output error than the sliced weights."""
    from modelpress.compress.prune import REFIT_PULL, refit_down_proj

    generator = torch.Generator().manual_seed(0)
    activations = torch.randn(500, 16, generator=generator, dtype=torch.float64)
    activations[:, 1] = activations[:, 0] + 0.1 * activations[:, 1]  # correlated channels
    weight = torch.randn(8, 16, generator=generator, dtype=torch.float64)
    channels = torch.tensor([0, 2, 3, 5, 8, 9, 12, 15])
    gram = activations.T @ activations
    down = torch.nn.Linear(8, 8, bias=False, dtype=torch.float64)
    before, after = refit_down_proj(down, weight, gram.float(), channels)

    kept = activations[:, channels]
    pull = REFIT_PULL * gram[channels][:, channels].diagonal().mean()
    stacked = torch.cat([kept, pull.sqrt() * torch.eye(8, dtype=torch.float64)])
    targets = torch.cat([activations @ weight.T, pull.sqrt() * weight[:, channels].T])
    expected = torch.linalg.lstsq(stacked, targets).solution.T
    torch.testing.assert_close(down.weight.detach(), expected, atol=1e-4, rtol=1e-4)

    def error(x: torch.Tensor) -> float:
        full = activations @ weight.T
        return float((kept @ x.T - full).pow(2).sum() / full.pow(2).sum())

    assert before == pytest.approx(error(weight[:, channels]), rel=1e-4)
    assert after == pytest.approx(error(expected), rel=1e-3) and after < before


def test_ffn_width_refit_lets_kept_channels_stand_in_for_their_twins(tiny_model):
    """Every odd channel is a weaker twin of the even one before it (half its activation,
    always): slicing the odd ones away loses their share of each MLP's output, and the
    refit gives it back through the kept twins."""
    model = load_model(tiny_model).float()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.gate_proj.weight[1::2] = layer.mlp.gate_proj.weight[::2]
            layer.mlp.up_proj.weight[1::2] = 0.5 * layer.mlp.up_proj.weight[::2]
    windows = calibration(model.config.vocab_size, count=8)
    with torch.no_grad():
        before = model(input_ids=windows).logits
    details = prune(model, PruneStep(method="ffn-width", fraction=0.5), windows)
    error = details["mlpOutputError"]
    assert error["sliced"] > 0.1 and error["refit"] < 0.1 * error["sliced"]
    for layer in model.model.layers:  # the even channels, every one
        assert layer.mlp.up_proj.weight.shape[0] == 128
    with torch.no_grad():
        after = model(input_ids=windows).logits
    torch.testing.assert_close(after, before, atol=0.05, rtol=0.05)


def test_grams_over_the_budget_take_one_pass_per_group_of_blocks(tiny_model, monkeypatch):
    """With room for one block's statistics at a time, each pass stops after its block,
    and every block is still cut and refit."""
    import modelpress.compress.prune as pruning

    model = load_model(tiny_model).float()
    width = model.config.intermediate_size
    monkeypatch.setattr(pruning, "FFN_GRAM_BUDGET", width * width * 4)
    reached: list[int] = []
    for index, layer in enumerate(model.model.layers):
        layer.register_forward_pre_hook(lambda *_, i=index: reached.append(i))
    windows = calibration(model.config.vocab_size, count=2)
    details = prune(model, PruneStep(method="ffn-width", fraction=0.5), windows)
    layers = len(model.model.layers)
    # pass k runs blocks 0..k for each of the two windows: 2 + 4 + 6 + 8 forwards
    assert len(reached) == 2 * layers * (layers + 1) // 2
    assert details["mlpOutputError"]["refit"] < details["mlpOutputError"]["sliced"]
    assert all(layer.mlp.down_proj.weight.shape[1] == width // 2 for layer in model.model.layers)
