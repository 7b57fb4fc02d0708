"""Sizing: from an artifact (or a config and a scheme) to GPUs, pod resources and vLLM args.

Pure functions, no I/O. Callers build a `ModelShape` from the model's config.json,
take the weight bytes from the artifact's manifest (or `predict_weights_bytes`
before compressing), and call `size_variant`.
"""

from modelpress.sizing.catalog import (
    CPU_TARGET,
    GPU_CATALOG,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    GpuType,
    catalog_with_overrides,
    find_gpu,
)
from modelpress.sizing.errors import SizingError
from modelpress.sizing.fit import (
    DeviceMemory,
    SizingResult,
    device_memory,
    size_variant,
    tensor_parallel_problem,
)
from modelpress.sizing.kaito import KaitoEstimate, kaito_estimate
from modelpress.sizing.measured import (
    MemoryComparison,
    VllmMemoryReport,
    compare_with_vllm,
    kv_cache_tokens,
    parse_vllm_log,
)
from modelpress.sizing.memory import kv_cache_bytes, kv_cache_bytes_per_token
from modelpress.sizing.schemes import SCHEMES, predict_weights_bytes, resolve_scheme
from modelpress.sizing.settings import ServingSettings
from modelpress.sizing.shape import ModelShape

__all__ = [
    "CPU_TARGET",
    "GPU_CATALOG",
    "GPU_PRODUCT_LABEL",
    "GPU_RESOURCE",
    "SCHEMES",
    "DeviceMemory",
    "GpuType",
    "KaitoEstimate",
    "MemoryComparison",
    "ModelShape",
    "ServingSettings",
    "SizingError",
    "SizingResult",
    "VllmMemoryReport",
    "catalog_with_overrides",
    "compare_with_vllm",
    "device_memory",
    "find_gpu",
    "kaito_estimate",
    "kv_cache_bytes",
    "kv_cache_bytes_per_token",
    "kv_cache_tokens",
    "parse_vllm_log",
    "predict_weights_bytes",
    "resolve_scheme",
    "size_variant",
    "tensor_parallel_problem",
]
