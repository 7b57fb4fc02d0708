"""Serving settings that decide how much memory a vLLM server needs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: Tokens vLLM runs through the model in one step when not told otherwise. vLLM's
#: own default depends on version and GPU (2048 to 16384); sizing always passes
#: --max-num-batched-tokens so the activation memory it predicts is the one used.
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192

KvCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]


class ServingSettings(BaseModel):
    """The vLLM knobs that decide memory. Accepts the CRD's camelCase names too."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )

    max_model_len: int = Field(default=4096, gt=0)
    max_num_seqs: int = Field(default=32, gt=0)
    kv_cache_dtype: KvCacheDtype = "auto"
    gpu_memory_utilization: float = Field(default=0.9, gt=0, lt=1)
    max_num_batched_tokens: int | None = Field(default=None, gt=0)
    enforce_eager: bool = False

    @property
    def batched_tokens(self) -> int:
        """Tokens per forward pass: the setting, or the default, never below maxNumSeqs."""
        return max(self.max_num_batched_tokens or DEFAULT_MAX_NUM_BATCHED_TOKENS, self.max_num_seqs)
