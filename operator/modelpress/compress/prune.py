"""Structured pruning that really shrinks the checkpoint.

layer-drop scores each decoder block by how much it turns the hidden state
(angular distance between the block's input and output, averaged over the
calibration tokens: ShortGPT's block influence in its angular form) and removes
the blocks that turn it least. ffn-width ranks each MLP channel by the
root-mean-square of its activation (the input of down_proj) on calibration text,
Minitron-style, and keeps the strongest channels in every block; then it refits
down_proj by least squares so the kept channels rebuild the block's whole MLP
output on that text (`refit_down_proj`). Both rewrite the config
(num_hidden_layers, layer_types; intermediate_size), so the saved model is an
ordinary, smaller checkpoint.
"""

from __future__ import annotations

import contextlib
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
from modelpress.sizing.chain import FFN_GRAM_BUDGET, ffn_channels_kept, layers_to_drop

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
    hooks are removed whatever happens. A hook may end a window's pass early by raising
    `_Enough`. Returns the number of tokens seen."""
    import torch

    tokens = 0
    try:
        progress = Progress(what, total=len(windows), unit="windows")
        with torch.no_grad():
            for window in windows:
                with contextlib.suppress(_Enough):
                    model.model(input_ids=window.unsqueeze(0), use_cache=False)
                tokens += window.numel()
                progress.advance(1)
    finally:
        for handle in handles:
            handle.remove()
    return tokens


class _Enough(Exception):
    """Stops a forward pass once the last block a pass watches has run."""


#: The refit's pull toward the sliced weights, as a share of the kept channels' mean
#: activation energy. On SmolLM2-135M, ffn-width 0.36 on 70 x 512 license tokens
#: (`benchmarks/ffn_refit.py --samples 70 --pull 0.02 --pull 0.1 --pull 0.5`), 0.02,
#: 0.1 and 0.5 gave +45.0 %, +44.0 % and +49.8 % in domain and +76.7 %, +75.0 % and
#: +78.6 % on other text. Pulled toward zero instead (plain ridge), the refit learns
#: the calibration text by heart and loses out of its domain (docs/compression.md).
REFIT_PULL = 0.1


def _narrow_ffn(model: torch.nn.Module, fraction: float, windows: torch.Tensor) -> dict[str, Any]:
    width = check_ffn_width(model)
    kept = ffn_channels_kept(width, fraction)
    layers = decoder_layers(model, purpose="ffn-width pruning")
    # Blocks of a later pass see the earlier ones already cut and refit, so they are
    # refit to what the pruned model feeds them, as sequential GPTQ does.
    per_pass = max(1, FFN_GRAM_BUDGET // (width * width * 4))
    errors: list[tuple[float, float]] = []
    for first in range(0, len(layers), per_pass):
        indices = list(range(first, min(first + per_pass, len(layers))))
        for index, gram in zip(indices, ffn_grams(model, windows, indices), strict=True):
            down = mlp_projections(layers[index], index)[2].weight.detach().clone()
            # importance: the channel's root-mean-square activation (the Gram's diagonal)
            channels = strongest_channels(gram.diagonal(), kept)
            narrow_mlp(layers[index], index, channels)
            sliced = mlp_projections(layers[index], index)[2]
            errors.append(refit_down_proj(sliced, down, gram, channels))
    model.config.intermediate_size = kept
    before = sum(e[0] for e in errors) / len(errors)
    after = sum(e[1] for e in errors) / len(errors)
    log.info(
        "ffn-width: kept %d of %d MLP channels in each of %d blocks; refit down_proj: "
        "relative error of the MLP output %.4f -> %.4f",
        kept,
        width,
        len(layers),
        before,
        after,
    )
    return {
        "intermediateSize": {"before": width, "after": kept},
        "mlpOutputError": {"sliced": round(before, 5), "refit": round(after, 5)},
    }


def strongest_channels(importance: torch.Tensor, kept: int) -> torch.Tensor:
    """The `kept` channels of highest importance, in their original order."""
    return importance.topk(kept).indices.sort().values


def ffn_grams(
    model: torch.nn.Module, windows: torch.Tensor, indices: list[int]
) -> list[torch.Tensor]:
    """For the blocks at `indices`, the Gram matrix (A^T A) of the MLP activations A (the
    input of down_proj) over the calibration tokens, in fp32. The forward pass stops
    after the last of these blocks."""
    import torch

    layers = decoder_layers(model, purpose="ffn-width pruning")
    downs = [mlp_projections(layers[index], index)[2] for index in indices]
    grams = [torch.zeros(d.in_features, d.in_features, dtype=torch.float32) for d in downs]

    def hook_for(position: int) -> Any:
        def hook(module: Any, args: tuple) -> None:
            activation = args[0].detach().float().reshape(-1, args[0].shape[-1])
            grams[position].addmm_(activation.T, activation)

        return hook

    def stop(module: Any, args: tuple, output: Any) -> None:
        raise _Enough

    handles = [down.register_forward_pre_hook(hook_for(p)) for p, down in enumerate(downs)]
    if indices[-1] < len(layers) - 1:
        handles.append(layers[indices[-1]].register_forward_hook(stop))
    what = f"ffn-width statistics, blocks {indices[0]}-{indices[-1]} of {len(layers)}"
    score_windows(model, windows, handles, what)
    return grams


def refit_down_proj(
    down: torch.nn.Linear, original: torch.Tensor, gram: torch.Tensor, channels: torch.Tensor
) -> tuple[float, float]:
    """Set `down` (the sliced down_proj) to the weights through which the kept `channels`
    best rebuild the original MLP output A W^T on the calibration activations A:

        min ||A_K X^T - A W^T||^2 + lambda ||X - W_K||^2,
        X^T = (G_KK + lambda I)^-1 (G_K: W^T + lambda W_K^T),  G = A^T A,

    pulled toward the sliced weights W_K (lambda = REFIT_PULL x the mean of G_KK's
    diagonal) so that it stays general beyond the calibration text. Returns the output's
    relative squared error before and after, for the lineage."""
    import torch

    g = gram.double()
    w = original.double()  # [hidden, width]
    kk = g[channels][:, channels]
    pull = REFIT_PULL * kk.diagonal().mean().clamp_min(1e-12)
    sliced = w[:, channels]
    rhs = g[channels] @ w.T + pull * sliced.T
    system = kk + pull * torch.eye(len(channels), dtype=torch.float64)
    refit = torch.linalg.solve(system, rhs).T  # [hidden, kept]
    energy = torch.einsum("hi,ij,hj->", w, g, w)

    def error(x: torch.Tensor) -> float:
        cross = torch.einsum("hi,ij,hj->", x, g[channels], w)
        own = torch.einsum("hi,ij,hj->", x, kk, x)
        return float((own - 2 * cross + energy) / energy.clamp_min(1e-12))

    with torch.no_grad():
        down.weight.copy_(refit.to(down.weight.dtype))
    return error(sliced), error(refit)


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
