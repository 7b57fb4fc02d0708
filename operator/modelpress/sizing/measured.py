"""Compare a sizing prediction with what a running vLLM server reports.

vLLM logs the memory its model took ("Model loading took 0.25 GiB ..."; the CPU
engine only "Checkpoint size: 0.11 GiB", to two decimals) and the
KV cache it allocated ("KV cache size: 12,345 tokens"; older engines log
"# CPU blocks: N" / "# GPU blocks: N"). `parse_vllm_log` reads those lines and
`compare_with_vllm` sets them against a `SizingResult`, typically one for the
`cpu` target, whose KV cache vLLM sizes from VLLM_CPU_KVCACHE_SPACE.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from modelpress.sizing.fit import SizingResult
from modelpress.sizing.memory import kv_cache_bytes_per_token
from modelpress.sizing.shape import ModelShape
from modelpress.sizing.units import GiB

_MODEL_LOADING = re.compile(r"Model loading took ([\d.]+) ?GiB")
_CHECKPOINT = re.compile(r"Checkpoint size: ([\d.]+) ?GiB")  # the CPU engine's only weights line
_KV_TOKENS = re.compile(r"KV cache size: ([\d,]+) tokens")
_BLOCKS = re.compile(r"# (?:CPU|GPU) blocks: (\d+)")


class VllmMemoryReport(BaseModel):
    """Memory figures read from a vLLM server's log (None when a line is absent)."""

    model_config = ConfigDict(frozen=True)

    weights_bytes: int | None = None
    kv_cache_tokens: int | None = None
    kv_cache_blocks: int | None = None


class MemoryComparison(BaseModel):
    """Predicted against reported, with relative errors ((predicted - reported) / reported)."""

    model_config = ConfigDict(frozen=True)

    predicted_weights_bytes: int
    reported_weights_bytes: int | None
    weights_error: float | None
    predicted_kv_cache_tokens: int
    reported_kv_cache_tokens: int | None
    kv_cache_tokens_error: float | None


def parse_vllm_log(text: str) -> VllmMemoryReport:
    """The last model-loading and KV-cache figures in a vLLM log."""
    loading = _MODEL_LOADING.findall(text) or _CHECKPOINT.findall(text)
    tokens = _KV_TOKENS.findall(text)
    blocks = _BLOCKS.findall(text)
    return VllmMemoryReport(
        weights_bytes=round(float(loading[-1]) * GiB) if loading else None,
        kv_cache_tokens=int(tokens[-1].replace(",", "")) if tokens else None,
        kv_cache_blocks=int(blocks[-1]) if blocks else None,
    )


def kv_cache_tokens(shape: ModelShape, kv_cache_bytes: int, kv_cache_dtype: str = "auto") -> int:
    """Tokens a KV cache of `kv_cache_bytes` holds for a full-attention model on one device."""
    return kv_cache_bytes // kv_cache_bytes_per_token(shape, kv_cache_dtype)


def compare_with_vllm(
    result: SizingResult, shape: ModelShape, report: VllmMemoryReport
) -> MemoryComparison:
    """How far `result`'s per-device weights and KV cache are from what vLLM reported."""
    predicted_weights = result.per_device.weights_bytes
    predicted_tokens = kv_cache_tokens(
        shape, result.per_device.kv_cache_bytes, result.kv_cache_dtype
    )
    return MemoryComparison(
        predicted_weights_bytes=predicted_weights,
        reported_weights_bytes=report.weights_bytes,
        weights_error=_error(predicted_weights, report.weights_bytes),
        predicted_kv_cache_tokens=predicted_tokens,
        reported_kv_cache_tokens=report.kv_cache_tokens,
        kv_cache_tokens_error=_error(predicted_tokens, report.kv_cache_tokens),
    )


def _error(predicted: int, reported: int | None) -> float | None:
    if not reported:
        return None
    return (predicted - reported) / reported
