"""Memory terms of one vLLM server, per device (one GPU, or the host for CPU serving).

- KV cache: every sequence of `maxNumSeqs` can hold `maxModelLen` tokens at once.
  Per token and layer vLLM stores a key and a value for each KV head it holds:
  2 x KV heads x head_dim x dtype bytes. Sliding-window layers keep only the
  window; tokens are allocated in blocks of 16. With tensor parallelism each GPU
  holds KV heads / TP heads, or one replicated head when TP exceeds them.
- Activations: the peak of one forward pass over `max_num_batched_tokens` tokens
  (hidden states, q/k/v, the gated MLP's widest intermediate) plus the sampler's
  float32 logits for `maxNumSeqs` sequences.
- CUDA graphs: vLLM captures decode graphs for batch sizes up to maxNumSeqs; it
  reports 0.3-0.9 GiB for 1B-70B models, sizing reserves 0.5 GiB per GPU.
- Runtime: memory outside PyTorch's allocator that vLLM counts against its
  budget (cuBLAS workspaces; NCCL and custom all-reduce buffers with TP > 1).
"""

from __future__ import annotations

from modelpress.sizing.errors import SizingError
from modelpress.sizing.settings import ServingSettings
from modelpress.sizing.shape import ModelShape
from modelpress.sizing.units import MiB, round_up

KV_BLOCK_TOKENS = 16
ACTIVATION_DTYPE_BYTES = 2
#: float32 logits, their softmax, and the int64 indices top-k/top-p sorting creates.
LOGITS_BYTES_PER_ELEMENT = 16
CUDA_GRAPH_BYTES = 512 * MiB
RUNTIME_BYTES = 512 * MiB
TENSOR_PARALLEL_RUNTIME_BYTES = 512 * MiB

_FP8_KV = {"fp8", "fp8_e4m3", "fp8_e5m2"}


def kv_dtype_bytes(kv_cache_dtype: str) -> int:
    """Bytes per cached element: 1 for fp8, otherwise the 16-bit model dtype."""
    if kv_cache_dtype in _FP8_KV:
        return 1
    if kv_cache_dtype == "auto":
        return 2
    raise SizingError(f"unknown kvCacheDtype {kv_cache_dtype!r}; use auto or fp8")


def kv_heads_per_gpu(shape: ModelShape, tensor_parallel_size: int = 1) -> int:
    """KV heads each GPU stores: split across TP ranks, replicated when TP exceeds them."""
    return max(1, shape.num_key_value_heads // tensor_parallel_size)


def kv_cache_bytes_per_token(shape: ModelShape, kv_cache_dtype: str = "auto") -> int:
    """Bytes one token occupies in the KV cache of a full-attention model (all layers).

    Llama-3.1-8B: 2 x 32 layers x 8 KV heads x 128 x 2 bytes = 128 KiB.
    """
    return (
        2
        * shape.num_hidden_layers
        * shape.num_key_value_heads
        * shape.head_dim
        * kv_dtype_bytes(kv_cache_dtype)
    )


def kv_cache_bytes_per_sequence(
    shape: ModelShape,
    max_model_len: int,
    kv_cache_dtype: str = "auto",
    tensor_parallel_size: int = 1,
) -> int:
    """KV bytes one GPU holds for one sequence of `max_model_len` tokens."""
    per_layer_token = (
        2
        * kv_heads_per_gpu(shape, tensor_parallel_size)
        * shape.head_dim
        * kv_dtype_bytes(kv_cache_dtype)
    )
    full_tokens = round_up(max_model_len, KV_BLOCK_TOKENS)
    layer_tokens = shape.full_attention_layers * full_tokens
    if shape.sliding_window_layers and shape.sliding_window:
        window_tokens = round_up(min(max_model_len, shape.sliding_window), KV_BLOCK_TOKENS)
        layer_tokens += shape.sliding_window_layers * window_tokens
    return per_layer_token * layer_tokens


def kv_cache_bytes(
    shape: ModelShape, settings: ServingSettings, tensor_parallel_size: int = 1
) -> int:
    """KV bytes one GPU holds so that maxNumSeqs sequences of maxModelLen tokens fit."""
    per_sequence = kv_cache_bytes_per_sequence(
        shape, settings.max_model_len, settings.kv_cache_dtype, tensor_parallel_size
    )
    return settings.max_num_seqs * per_sequence


def activation_bytes(
    shape: ModelShape, settings: ServingSettings, tensor_parallel_size: int = 1
) -> int:
    """Peak activation memory of one forward pass on one GPU (or the host)."""
    tp = tensor_parallel_size
    hidden = shape.hidden_size
    qkv_width = (
        shape.num_attention_heads * shape.head_dim // tp
        + 2 * kv_heads_per_gpu(shape, tp) * shape.head_dim
    )
    if shape.num_experts:
        routed = shape.num_experts_per_token * (3 * shape.expert_intermediate_size // tp + hidden)
        mlp_width = routed + 3 * shape.shared_expert_intermediate_size // tp
    else:
        mlp_width = 3 * shape.intermediate_size // tp
    per_token = 4 * hidden + qkv_width + mlp_width
    forward = settings.batched_tokens * per_token * ACTIVATION_DTYPE_BYTES
    logits = settings.max_num_seqs * shape.vocab_size * LOGITS_BYTES_PER_ELEMENT
    return forward + logits


def cuda_graph_bytes(settings: ServingSettings) -> int:
    """Memory CUDA graph capture takes on each GPU (none with enforce_eager)."""
    return 0 if settings.enforce_eager else CUDA_GRAPH_BYTES


def runtime_bytes(tensor_parallel_size: int) -> int:
    """Non-PyTorch GPU memory vLLM counts against its budget on each GPU."""
    extra = TENSOR_PARALLEL_RUNTIME_BYTES if tensor_parallel_size > 1 else 0
    return RUNTIME_BYTES + extra
