"""KAITO's GPU-count estimate, reproduced for comparison tables.

KAITO's advanced node estimator takes the model's safetensors size x 1.02 as the
weights vLLM loads, 84 % of each GPU's marketed memory as usable, and reserves per
GPU a 2.3 GiB base overhead plus the KV cache of one maxModelLen-token sequence
(context x 2 x layers x KV heads x head_dim x 2 bytes, divided by the node's GPU
count). The GPU count is floor(weights / (usable - reserve)) + 1. Its size comes
from 16-bit checkpoints, so a quantized variant is estimated like its base model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from modelpress.sizing.catalog import GpuType
from modelpress.sizing.errors import SizingError
from modelpress.sizing.shape import ModelShape
from modelpress.sizing.units import GiB

WEIGHT_EXPANSION = 1.02
GPU_MEMORY_UTILIZATION = 0.84
BASE_OVERHEAD_BYTES = 2.3 * GiB
KV_DTYPE_BYTES = 2


class KaitoEstimate(BaseModel):
    """KAITO's numbers for one model on one GPU product."""

    model_config = ConfigDict(frozen=True)

    gpus: int | None  # None: KAITO rejects the GPU as too small for its overhead
    required_bytes: int
    usable_bytes_per_gpu: int
    overhead_bytes_per_gpu: int


def kaito_estimate(
    shape: ModelShape,
    gpu: GpuType,
    max_model_len: int,
    weights_bytes: int | None = None,
    gpus_per_node: int = 1,
) -> KaitoEstimate:
    """GPUs KAITO would request for `shape` on `gpu` at `max_model_len` tokens.

    `weights_bytes` defaults to the 16-bit checkpoint size (parameters x 2), which
    is what KAITO sizes quantized variants by.
    """
    if max_model_len <= 0 or gpus_per_node <= 0:
        raise SizingError("max_model_len and gpus_per_node must be positive")
    checkpoint = weights_bytes if weights_bytes is not None else shape.parameter_count() * 2
    required = int(checkpoint * WEIGHT_EXPANSION)
    usable = int(gpu.nominal_memory * GPU_MEMORY_UTILIZATION)
    bytes_per_token = (
        2 * shape.num_hidden_layers * shape.num_key_value_heads * shape.head_dim * KV_DTYPE_BYTES
    )
    overhead = int(BASE_OVERHEAD_BYTES + max_model_len * bytes_per_token / gpus_per_node)
    gpus = None if usable <= overhead else int(required / (usable - overhead)) + 1
    return KaitoEstimate(
        gpus=gpus,
        required_bytes=required,
        usable_bytes_per_gpu=usable,
        overhead_bytes_per_gpu=overhead,
    )
