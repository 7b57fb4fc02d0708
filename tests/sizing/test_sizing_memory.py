"""KV cache and activation terms against published figures and vLLM's layout."""

from __future__ import annotations

import pytest
from tests.sizing.known_models import shape_of

from modelpress.sizing import ServingSettings, kv_cache_bytes, kv_cache_bytes_per_token
from modelpress.sizing.memory import activation_bytes, kv_heads_per_gpu
from modelpress.sizing.units import KiB


@pytest.mark.parametrize(
    ("name", "dtype", "kib"),
    [
        ("Llama-3.1-8B-Instruct", "auto", 128),
        ("Llama-3.1-8B-Instruct", "fp8", 64),
        ("Llama-3.1-70B", "auto", 320),
        ("Qwen2.5-7B", "auto", 56),
        ("Mixtral-8x7B", "auto", 128),
        ("SmolLM2-135M", "auto", 22.5),
    ],
)
def test_kv_bytes_per_token_match_published(name: str, dtype: str, kib: float) -> None:
    assert kv_cache_bytes_per_token(shape_of(name), dtype) == kib * KiB


def test_kv_cache_covers_every_sequence_at_full_length() -> None:
    shape = shape_of("Llama-3.1-8B-Instruct")
    settings = ServingSettings(max_model_len=4096, max_num_seqs=32)
    assert kv_cache_bytes(shape, settings) == 32 * 4096 * 128 * KiB


def test_kv_cache_rounds_tokens_up_to_blocks() -> None:
    shape = shape_of("Llama-3.1-8B-Instruct")
    assert kv_cache_bytes(shape, ServingSettings(max_model_len=1000, max_num_seqs=1)) == (
        1008 * 128 * KiB
    )


def test_kv_cache_splits_across_tensor_parallel_ranks() -> None:
    shape = shape_of("Llama-3.1-8B-Instruct")
    settings = ServingSettings(max_model_len=4096, max_num_seqs=8)
    assert kv_cache_bytes(shape, settings, 4) * 4 == kv_cache_bytes(shape, settings)


def test_kv_heads_replicate_when_tensor_parallel_exceeds_them() -> None:
    shape = shape_of("Qwen2.5-7B")  # 4 KV heads
    assert kv_heads_per_gpu(shape, 2) == 2
    assert kv_heads_per_gpu(shape, 8) == 1  # replicated: 8 GPUs hold 8 copies in total


def test_sliding_window_layers_cache_only_the_window() -> None:
    settings = ServingSettings(max_model_len=32768, max_num_seqs=1)
    full = shape_of("Mistral-7B-v0.3")
    windowed = shape_of("Mistral-7B-v0.3", sliding_window=4096)
    assert kv_cache_bytes(windowed, settings) * 8 == kv_cache_bytes(full, settings)
    short = ServingSettings(max_model_len=2048, max_num_seqs=1)
    assert kv_cache_bytes(windowed, short) == kv_cache_bytes(full, short)


def test_fp8_kv_cache_halves_it() -> None:
    shape = shape_of("Llama-3.1-70B")
    auto = kv_cache_bytes(shape, ServingSettings(max_model_len=8192, max_num_seqs=4))
    fp8 = kv_cache_bytes(
        shape, ServingSettings(max_model_len=8192, max_num_seqs=4, kv_cache_dtype="fp8")
    )
    assert fp8 * 2 == auto


def test_activations_grow_with_batched_tokens_and_shrink_with_tp() -> None:
    shape = shape_of("Llama-3.1-8B-Instruct")
    small = ServingSettings(max_num_batched_tokens=2048)
    large = ServingSettings(max_num_batched_tokens=8192)
    assert activation_bytes(shape, large) > activation_bytes(shape, small)
    assert activation_bytes(shape, large, 4) < activation_bytes(shape, large)


def test_settings_accept_camel_case_from_the_spec() -> None:
    settings = ServingSettings.model_validate(
        {"maxModelLen": 8192, "maxNumSeqs": 4, "kvCacheDtype": "fp8", "replicas": 2}
    )
    assert (settings.max_model_len, settings.max_num_seqs, settings.kv_cache_dtype) == (
        8192,
        4,
        "fp8",
    )
