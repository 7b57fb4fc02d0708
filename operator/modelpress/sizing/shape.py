"""The shape of a decoder-only language model, read from its Hugging Face config.json.

Sizing needs only a handful of numbers: how many layers and heads, how wide the
matrices are, which layers use a sliding window, how many experts. `ModelShape`
holds them and lists the model's weight matrices, so that predicted weight bytes
come from the same inventory a quantizer walks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelpress.problems import describe
from modelpress.sizing.errors import SizingError
from modelpress.sizing.groups import checkpoint_group_sizes

# Model types whose q/k/v projections carry a bias although the config says nothing.
_QKV_BIAS_MODEL_TYPES = frozenset({"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"})
# Model types with a per-head RMSNorm on queries and keys (head_dim weights each).
_QK_NORM_MODEL_TYPES = frozenset({"qwen3", "qwen3_moe", "olmo2", "gemma3", "gemma3_text"})
# Model types that alternate sliding-window and full-attention layers.
_ALTERNATING_WINDOW_MODEL_TYPES = frozenset({"gemma2"})


@dataclass(frozen=True)
class LinearWeight:
    """One kind of weight matrix: shape (out_features, in_features), `count` copies."""

    name: str
    out_features: int
    in_features: int
    count: int


class ModelShape(BaseModel):
    """What sizing knows about a model: dimensions, attention layout, experts."""

    model_config = ConfigDict(frozen=True)

    model_type: str = "unknown"
    hidden_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_proj_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    num_experts: int = Field(default=0, ge=0)
    num_experts_per_token: int = Field(default=0, ge=0)
    moe_intermediate_size: int | None = Field(default=None, gt=0)
    shared_expert_intermediate_size: int = Field(default=0, ge=0)
    sliding_window: int | None = Field(default=None, gt=0)
    sliding_window_layers: int = Field(default=0, ge=0)
    torch_dtype: str = "bfloat16"
    #: Linear input width -> the group size an already quantized checkpoint uses there
    #: (`modelpress.sizing.groups`); empty for unquantized or per-channel weights.
    weight_group_sizes: dict[int, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ModelShape:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.sliding_window_layers > self.num_hidden_layers:
            raise ValueError("sliding_window_layers cannot exceed num_hidden_layers")
        if self.sliding_window_layers and self.sliding_window is None:
            raise ValueError("sliding_window_layers is set but sliding_window is not")
        if self.num_experts and not self.num_experts_per_token:
            raise ValueError("a mixture-of-experts config needs num_experts_per_tok")
        return self

    # ---- reading config.json -------------------------------------------------

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """Read a Hugging Face config.json dict (or a multimodal one's text_config)."""
        if not isinstance(config, Mapping):
            raise SizingError("model config must be a JSON object (the model's config.json)")
        cfg: Mapping[str, Any] = config
        if "hidden_size" not in cfg and isinstance(cfg.get("text_config"), Mapping):
            cfg = {**cfg["text_config"], "quantization_config": cfg.get("quantization_config")}
        if "kv_lora_rank" in cfg:
            raise SizingError(
                "multi-head latent attention (DeepSeek-style kv_lora_rank) is not supported by "
                "sizing; serve this model with an explicit GPU count"
            )

        def required(key: str) -> int:
            value = cfg.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise SizingError(
                    f"model config lacks a positive integer {key!r}; pass the model's config.json"
                )
            return value

        model_type = str(cfg.get("model_type") or "unknown")
        hidden = required("hidden_size")
        layers = required("num_hidden_layers")
        heads = required("num_attention_heads")
        kv_heads = cfg.get("num_key_value_heads") or heads
        head_dim = cfg.get("head_dim") or hidden // heads
        num_experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 0)
        attention_bias = bool(cfg.get("attention_bias", False))
        window, window_layers = _sliding_window(cfg, model_type, layers)
        try:
            shape = cls(
                model_type=model_type,
                hidden_size=hidden,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                num_key_value_heads=kv_heads,
                head_dim=head_dim,
                intermediate_size=required("intermediate_size"),
                vocab_size=required("vocab_size"),
                max_position_embeddings=required("max_position_embeddings"),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                qkv_bias=attention_bias or model_type in _QKV_BIAS_MODEL_TYPES,
                o_proj_bias=attention_bias,
                mlp_bias=bool(cfg.get("mlp_bias", False)),
                qk_norm=model_type in _QK_NORM_MODEL_TYPES,
                num_experts=num_experts,
                num_experts_per_token=int(cfg.get("num_experts_per_tok") or 0)
                if num_experts
                else 0,
                moe_intermediate_size=cfg.get("moe_intermediate_size") if num_experts else None,
                shared_expert_intermediate_size=int(
                    cfg.get("shared_expert_intermediate_size") or 0
                ),
                sliding_window=window,
                sliding_window_layers=window_layers,
                torch_dtype=str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"),
            )
        except ValidationError as error:
            raise SizingError(f"model config is not usable: {describe(error, limit=1)}") from None
        groups = checkpoint_group_sizes(cfg.get("quantization_config"), shape.linear_weights())
        return shape.model_copy(update={"weight_group_sizes": groups}) if groups else shape

    # ---- derived numbers -----------------------------------------------------

    @property
    def expert_intermediate_size(self) -> int:
        """Width of one expert's MLP (the dense MLP width when the model has no experts)."""
        return self.moe_intermediate_size or self.intermediate_size

    @property
    def full_attention_layers(self) -> int:
        """Layers that attend over the whole context (and so cache every token)."""
        return self.num_hidden_layers - self.sliding_window_layers

    def linear_weights(self) -> list[LinearWeight]:
        """The decoder's Linear weight matrices: what weight quantization rewrites.

        Embeddings, lm_head, norms, biases and MoE routers are not listed; they
        stay in the checkpoint dtype under every scheme sizing knows.
        """
        layers = self.num_hidden_layers
        hidden = self.hidden_size
        q_width = self.num_attention_heads * self.head_dim
        kv_width = self.num_key_value_heads * self.head_dim
        weights = [
            LinearWeight("q_proj", q_width, hidden, layers),
            LinearWeight("k_proj", kv_width, hidden, layers),
            LinearWeight("v_proj", kv_width, hidden, layers),
            LinearWeight("o_proj", hidden, q_width, layers),
        ]
        if self.num_experts:
            inner, copies = self.expert_intermediate_size, layers * self.num_experts
            weights += [
                LinearWeight("experts.gate_proj", inner, hidden, copies),
                LinearWeight("experts.up_proj", inner, hidden, copies),
                LinearWeight("experts.down_proj", hidden, inner, copies),
            ]
            if self.shared_expert_intermediate_size:
                shared = self.shared_expert_intermediate_size
                weights += [
                    LinearWeight("shared_expert.gate_proj", shared, hidden, layers),
                    LinearWeight("shared_expert.up_proj", shared, hidden, layers),
                    LinearWeight("shared_expert.down_proj", hidden, shared, layers),
                ]
        else:
            inner = self.intermediate_size
            weights += [
                LinearWeight("mlp.gate_proj", inner, hidden, layers),
                LinearWeight("mlp.up_proj", inner, hidden, layers),
                LinearWeight("mlp.down_proj", hidden, inner, layers),
            ]
        return weights

    def embedding_parameters(self) -> int:
        """embed_tokens plus lm_head (once when they are tied)."""
        copies = 1 if self.tie_word_embeddings else 2
        return copies * self.vocab_size * self.hidden_size

    def other_parameters(self) -> int:
        """Norms, biases and routers: small tensors kept in the checkpoint dtype."""
        layers, hidden = self.num_hidden_layers, self.hidden_size
        q_width = self.num_attention_heads * self.head_dim
        kv_width = self.num_key_value_heads * self.head_dim
        count = layers * 2 * hidden + hidden  # two RMSNorms per layer, one final norm
        if self.qk_norm:
            count += layers * 2 * self.head_dim
        if self.qkv_bias:
            count += layers * (q_width + 2 * kv_width)
        if self.o_proj_bias:
            count += layers * hidden
        if self.num_experts:
            count += layers * hidden * self.num_experts  # router
            if self.shared_expert_intermediate_size:
                count += layers * hidden  # shared_expert_gate
        if self.mlp_bias:
            for weight in self.linear_weights():
                if "mlp" in weight.name or "expert" in weight.name:
                    count += weight.count * weight.out_features
        return count

    def parameter_count(self) -> int:
        """All parameters, as `sum(p.numel() for p in model.parameters())` would count them."""
        linear = sum(w.out_features * w.in_features * w.count for w in self.linear_weights())
        return linear + self.embedding_parameters() + self.other_parameters()


def _sliding_window(cfg: Mapping[str, Any], model_type: str, layers: int) -> tuple[int | None, int]:
    """(window, number of layers that use it), following each config convention."""
    window = cfg.get("sliding_window")
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return None, 0
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        sliding = sum(1 for kind in layer_types[:layers] if kind == "sliding_attention")
        return (window, sliding) if sliding else (None, 0)
    if cfg.get("use_sliding_window") is False:
        return None, 0
    if cfg.get("use_sliding_window") is True and isinstance(cfg.get("max_window_layers"), int):
        # Qwen2 convention: the first max_window_layers layers use full attention.
        sliding = max(0, layers - cfg["max_window_layers"])
        return (window, sliding) if sliding else (None, 0)
    pattern = cfg.get("sliding_window_pattern")
    if isinstance(pattern, int) and pattern > 1:
        # Every pattern-th layer attends globally, the others locally.
        return window, layers - layers // pattern
    if model_type in _ALTERNATING_WINDOW_MODEL_TYPES:
        return window, layers - layers // 2
    return window, layers
