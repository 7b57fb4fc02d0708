"""Structured pruning that really shrinks the checkpoint.

layer-drop scores each decoder block by how much it turns the hidden state
(angular distance between the block's input and output, averaged over the
calibration tokens: ShortGPT's block influence in its angular form) and removes
the blocks that turn it least. ffn-width ranks each MLP channel by the
root-mean-square of its activation (the input of down_proj) on calibration text,
Minitron-style, and keeps the strongest channels in every block. Both rewrite the
config (num_hidden_layers, layer_types; intermediate_size), so the saved model is
an ordinary, smaller checkpoint.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from modelpress.api.steps import PruneStep
from modelpress.compress.architecture import (
    check_ffn_width,
    decoder_layers,
    mlp_projections,
    renumber_layers,
)
from modelpress.compress.preflight import keep_layers_in_config
from modelpress.compress.progress import Progress
from modelpress.sizing.chain import ffn_channels_kept, layers_to_drop

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def prune(model: torch.nn.Module, step: PruneStep, windows: torch.Tensor) -> dict[str, Any]:
    """Prune `model` in place; returns what was removed (for the lineage)."""
    if step.method == "layer-drop":
        return _drop_layers(model, step.fraction, windows)
    return _narrow_ffn(model, step.fraction, windows)


def _drop_layers(model: torch.nn.Module, fraction: float, windows: torch.Tensor) -> dict[str, Any]:
    layers = decoder_layers(model, purpose="layer-drop pruning")
    count = layers_to_drop(len(layers), fraction)
    distances = block_angular_distances(model, windows)
    dropped = sorted(sorted(range(len(layers)), key=lambda index: distances[index])[:count])
    log.info(
        "layer-drop: removing %d of %d blocks %s (angular distance %s)",
        count,
        len(layers),
        dropped,
        ", ".join(f"{distances[index]:.3f}" for index in dropped),
    )
    remove_layers(model, dropped)
    return {"droppedLayers": dropped, "angularDistances": [round(d, 5) for d in distances]}


def remove_layers(model: torch.nn.Module, dropped: list[int]) -> None:
    """Delete the blocks at `dropped` and rewrite indices and config to match."""
    import torch

    layers = decoder_layers(model, purpose="layer-drop pruning")
    kept = [index for index in range(len(layers)) if index not in set(dropped)]
    model.model.layers = torch.nn.ModuleList([layers[index] for index in kept])
    renumber_layers(model.model.layers)
    keep_layers_in_config(model.config, kept)


def block_angular_distances(model: torch.nn.Module, windows: torch.Tensor) -> list[float]:
    """Mean angle (in units of pi) between each block's input and output hidden states."""
    import torch

    layers = decoder_layers(model, purpose="layer-drop pruning")
    totals = [0.0] * len(layers)

    def hook_for(index: int) -> Any:
        def hook(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            before = args[0] if args else kwargs["hidden_states"]
            after = output[0] if isinstance(output, tuple) else output
            cosine = torch.nn.functional.cosine_similarity(before.float(), after.float(), dim=-1)
            totals[index] += torch.arccos(cosine.clamp(-1.0, 1.0)).sum().item() / math.pi

        return hook

    handles = [
        layer.register_forward_hook(hook_for(index), with_kwargs=True)
        for index, layer in enumerate(layers)
    ]
    tokens = score_windows(model, windows, handles, "layer-drop scoring")
    return [total / tokens for total in totals]


def score_windows(
    model: torch.nn.Module, windows: torch.Tensor, handles: list[Any], what: str
) -> int:
    """Run the calibration windows through the model while scoring hooks watch; the
    hooks are removed whatever happens. Returns the number of tokens seen."""
    import torch

    tokens = 0
    try:
        progress = Progress(what, total=len(windows), unit="windows")
        with torch.no_grad():
            for window in windows:
                model.model(input_ids=window.unsqueeze(0), use_cache=False)
                tokens += window.numel()
                progress.advance(1)
    finally:
        for handle in handles:
            handle.remove()
    return tokens


def _narrow_ffn(model: torch.nn.Module, fraction: float, windows: torch.Tensor) -> dict[str, Any]:
    width = check_ffn_width(model)
    kept = ffn_channels_kept(width, fraction)
    importance = ffn_channel_importance(model, windows)
    layers = decoder_layers(model, purpose="ffn-width pruning")
    for index, layer in enumerate(layers):
        channels = importance[index].topk(kept).indices.sort().values
        narrow_mlp(layer, index, channels)
    model.config.intermediate_size = kept
    log.info("ffn-width: kept %d of %d MLP channels in each of %d blocks", kept, width, len(layers))
    return {"intermediateSize": {"before": width, "after": kept}}


def ffn_channel_importance(model: torch.nn.Module, windows: torch.Tensor) -> list[torch.Tensor]:
    """Per block, the root-mean-square activation of each MLP channel over calibration tokens."""
    import torch

    layers = decoder_layers(model, purpose="ffn-width pruning")
    downs = [mlp_projections(layer, index)[2] for index, layer in enumerate(layers)]
    squares = [torch.zeros(down.in_features, dtype=torch.float64) for down in downs]

    def hook_for(index: int) -> Any:
        def hook(module: Any, args: tuple) -> None:
            activation = args[0].detach().double()
            squares[index] += activation.pow(2).reshape(-1, activation.shape[-1]).sum(0)

        return hook

    handles = [down.register_forward_pre_hook(hook_for(index)) for index, down in enumerate(downs)]
    tokens = score_windows(model, windows, handles, "ffn-width scoring")
    return [(total / tokens).sqrt().float() for total in squares]


def narrow_mlp(layer: torch.nn.Module, index: int, channels: torch.Tensor) -> None:
    """Keep only `channels` of one block's MLP: rows of gate/up, columns of down."""
    import torch

    gate, up, down = mlp_projections(layer, index)

    def sliced(linear: torch.nn.Linear, weight: torch.Tensor) -> torch.nn.Linear:
        out_features, in_features = weight.shape
        new = torch.nn.Linear(in_features, out_features, bias=False, dtype=weight.dtype)
        new.weight = torch.nn.Parameter(
            weight.contiguous(), requires_grad=linear.weight.requires_grad
        )
        return new

    with torch.no_grad():
        layer.mlp.gate_proj = sliced(gate, gate.weight[channels])
        layer.mlp.up_proj = sliced(up, up.weight[channels])
        layer.mlp.down_proj = sliced(down, down.weight[:, channels])
    if hasattr(layer.mlp, "intermediate_size"):
        layer.mlp.intermediate_size = len(channels)
