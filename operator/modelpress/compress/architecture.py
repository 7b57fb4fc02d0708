"""Where the decoder blocks and MLP projections of a causal language model live.

Structured pruning and student construction rewrite the model's own modules, so
they work on models laid out like Llama: `model.layers` (a list of decoder blocks),
each with `mlp.gate_proj`, `mlp.up_proj` and `mlp.down_proj` for width pruning.
Checks run on a weightless (meta-device) copy, so a model a method cannot handle
is rejected before anything is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelpress.compress.errors import CompressionError

if TYPE_CHECKING:
    import torch

MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")

# Config attributes holding one entry per decoder layer, filtered when layers are dropped.
PER_LAYER_CONFIG_LISTS = ("layer_types", "no_rope_layers")


def empty_model(config: Any) -> torch.nn.Module:
    """The model `config` describes, with no memory behind its weights."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError) as error:
        raise CompressionError(
            f"model type {getattr(config, 'model_type', '?')!r} is not a causal language model "
            f"transformers can build ({error}): use a decoder-only text model",
            reason="UnsupportedArchitecture",
        ) from None


def decoder_layers(model: torch.nn.Module, *, purpose: str) -> torch.nn.ModuleList:
    """The model's decoder blocks; `purpose` names the method in the error."""
    import torch

    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise CompressionError(
            f"{purpose} needs a model with decoder blocks at model.layers (Llama, Mistral, "
            f"Qwen, Gemma and similar); {type(model).__name__} has none: use another method "
            "or a model laid out that way",
            reason="UnsupportedArchitecture",
        )
    return layers


def mlp_projections(layer: torch.nn.Module, index: int) -> tuple[Any, Any, Any]:
    """(gate_proj, up_proj, down_proj) of one block's gated MLP."""
    import torch

    mlp = getattr(layer, "mlp", None)
    found = [getattr(mlp, name, None) for name in MLP_PROJECTIONS]
    if not all(isinstance(module, torch.nn.Linear) for module in found):
        raise CompressionError(
            f"ffn-width pruning needs a gated MLP (mlp.gate_proj, mlp.up_proj, mlp.down_proj "
            f"as linear layers) in every decoder block; block {index} "
            f"({type(layer).__name__}) has none: use layer-drop for this model",
            reason="UnsupportedArchitecture",
        )
    gate, up, down = found
    if any(module.bias is not None for module in found):
        raise CompressionError(
            f"ffn-width pruning supports MLP projections without bias; block {index} has biases: "
            "use layer-drop for this model",
            reason="UnsupportedArchitecture",
        )
    return gate, up, down


def check_layer_drop(model: torch.nn.Module) -> int:
    """The number of decoder blocks, after checking they can be dropped."""
    layers = decoder_layers(model, purpose="layer-drop pruning")
    return len(layers)


def check_ffn_width(model: torch.nn.Module) -> int:
    """The MLP width shared by every block, after checking each block can be narrowed."""
    layers = decoder_layers(model, purpose="ffn-width pruning")
    widths = {mlp_projections(layer, index)[2].in_features for index, layer in enumerate(layers)}
    if len(widths) != 1:
        raise CompressionError(
            f"ffn-width pruning needs the same MLP width in every block; found {sorted(widths)}: "
            "use layer-drop for this model",
            reason="UnsupportedArchitecture",
        )
    return widths.pop()


def renumber_layers(layers: torch.nn.ModuleList) -> None:
    """Give each block (and its attention) its new position, which KV caches are indexed by."""
    for position, layer in enumerate(layers):
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = position  # type: ignore[assignment]  # a plain int attribute


def parameter_count(model: torch.nn.Module) -> int:
    """Parameters of the model, tied weights counted once."""
    return sum(parameter.numel() for parameter in model.parameters())
