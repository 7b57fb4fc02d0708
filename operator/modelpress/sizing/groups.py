"""The weight group sizes an already quantized checkpoint uses, per Linear input width.

Tensor parallelism splits the inputs of o_proj and down_proj across GPUs, and no piece
may cut a group, so sizing needs each layer's own group size. A checkpoint's layers
can differ: modelpress's default W4A16 groups are 128 where they divide a layer's
inputs and 64 elsewhere (SmolLM2: 64 on the 576-wide layers, 128 on down_proj).
compressed-tensors names each scheme's layers by class (`Linear`), by module name, or
by a `re:` pattern; a name or pattern wins over a class, as llmcompressor and vLLM
resolve it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelpress.sizing.shape import LinearWeight

_ATTENTION = frozenset({"q_proj", "k_proj", "v_proj", "o_proj"})
LINEAR_CLASS = "Linear"


def module_name(weight_name: str) -> str:
    """A module name of this kind of weight in layer 0 (and expert 0), as Hugging Face
    Llama-style checkpoints name it: what a name or pattern target is matched against."""
    if weight_name in _ATTENTION:
        return f"model.layers.0.self_attn.{weight_name}"
    if weight_name.startswith("mlp."):
        return f"model.layers.0.{weight_name}"
    return "model.layers.0.mlp." + weight_name.replace("experts.", "experts.0.")


def _names(target: str, name: str) -> bool:
    """Whether a name or `re:` target selects module `name` (any layer, any expert). A
    pattern that does not compile selects nothing, so its scheme counts at every width."""
    if target.startswith("re:"):
        try:
            return re.match(target.removeprefix("re:"), name) is not None
        except re.error:
            return False
    numbered = re.sub(r"\.\d+\.", ".0.", f".{target}.")[1:-1]
    return numbered == name or numbered.endswith("." + name.removeprefix("model."))


def checkpoint_group_sizes(
    quantization_config: Any, weights: Iterable[LinearWeight]
) -> dict[int, int]:
    """Input width -> weight group size, for the widths a grouped scheme quantizes (the
    largest, should layers of one width differ); per-channel and unquantized widths are
    absent. `weights`: the model's Linear inventory (`ModelShape.linear_weights`).

    A scheme that names layers this inventory does not know (another architecture's
    names) may hold any width: its group size is counted at every width, which can only
    make tensor-parallel checks stricter."""
    if not isinstance(quantization_config, Mapping):
        return {}
    weights = list(weights)
    size = _positive(quantization_config.get("group_size"))  # GPTQ / AWQ: every layer
    config_groups = quantization_config.get("config_groups")
    if not isinstance(config_groups, Mapping):
        return {weight.in_features: size for weight in weights} if size else {}
    schemes = [_Scheme.read(scheme) for scheme in config_groups.values()]
    known = [module_name(weight.name) for weight in weights]
    unplaced = [
        scheme.group_size
        for scheme in schemes
        if scheme.names and not any(scheme.selects(name) for name in known)
    ]
    groups: dict[int, int] = {}
    for weight, name in zip(weights, known, strict=True):
        named = [scheme for scheme in schemes if scheme.selects(name)]
        chosen = named or [scheme for scheme in schemes if scheme.by_class]
        sizes = [scheme.group_size for scheme in chosen] + unplaced
        group = max((size for size in sizes if size), default=None)
        if group:
            groups[weight.in_features] = max(group, groups.get(weight.in_features, 0))
    return groups


@dataclass(frozen=True)
class _Scheme:
    """One compressed-tensors scheme: what it targets and its weights' group size."""

    names: tuple[str, ...]
    by_class: bool
    group_size: int | None

    @classmethod
    def read(cls, scheme: Any) -> _Scheme:
        if not isinstance(scheme, Mapping):
            return cls((), False, None)
        targets = scheme.get("targets") or [LINEAR_CLASS]
        # a target that is not a string reads as a name no layer has: counted everywhere
        targets = [str(t) for t in targets] if isinstance(targets, list) else [str(targets)]
        weights = scheme.get("weights")
        if not isinstance(weights, Mapping) or weights.get("strategy") != "group":
            weights = {}
        size = _positive(weights.get("group_size"))
        names = tuple(t for t in targets if t != LINEAR_CLASS)
        return cls(names, LINEAR_CLASS in targets, size)

    def selects(self, name: str) -> bool:
        return any(_names(target, name) for target in self.names)


def _positive(value: Any) -> int | None:
    """A group size as configs write it: a positive integer (not a boolean), else None."""
    valid = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if valid else None
