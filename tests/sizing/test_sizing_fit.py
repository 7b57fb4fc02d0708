"""size_variant: GPU count, fit, offload, CPU serving and the pod it describes."""

from __future__ import annotations

import json

import pytest
from tests.sizing.known_models import shape_of

from modelpress.sizing import (
    GPU_CATALOG,
    GpuType,
    ServingSettings,
    SizingError,
    catalog_with_overrides,
    predict_weights_bytes,
    size_variant,
)
from modelpress.sizing.fit import tensor_parallel_problem
from modelpress.sizing.units import GiB

LLAMA_8B = shape_of("Llama-3.1-8B-Instruct")
LLAMA_70B = shape_of("Llama-3.1-70B")
SHORT = ServingSettings(max_model_len=4096, max_num_seqs=8)


def test_small_model_fits_one_gpu_with_the_expected_pod() -> None:
    weights = predict_weights_bytes(LLAMA_8B, "W4A16")
    result = size_variant(LLAMA_8B, weights, SHORT, "nvidia-l4")
    assert result.fits and result.gpus == 1 and result.tensor_parallel_size == 1
    assert result.per_device.total_bytes <= result.per_device.budget_bytes
    assert (
        result.total_bytes == result.weights_bytes + result.kv_cache_bytes + result.overhead_bytes
    )
    assert result.kv_cache_bytes == 8 * 4096 * 128 * 1024
    args = result.vllm_args
    assert args[args.index("--tensor-parallel-size") + 1] == "1"
    assert args[args.index("--max-model-len") + 1] == "4096"
    assert args[args.index("--max-num-seqs") + 1] == "8"
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.9"
    assert args[args.index("--kv-cache-dtype") + 1] == "auto"
    assert "--cpu-offload-gb" not in args
    assert result.resources["requests"]["nvidia.com/gpu"] == "1"
    assert result.resources["limits"]["nvidia.com/gpu"] == "1"
    assert result.node_selector == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert result.tolerations[0]["key"] == "nvidia.com/gpu"
    assert result.env == {}


def test_quantized_variant_needs_fewer_gpus_than_bf16() -> None:
    bf16 = size_variant(
        LLAMA_70B, predict_weights_bytes(LLAMA_70B, "bf16"), SHORT, "nvidia-a100-80gb"
    )
    w4 = size_variant(
        LLAMA_70B, predict_weights_bytes(LLAMA_70B, "W4A16"), SHORT, "nvidia-a100-80gb"
    )
    assert bf16.fits and w4.fits
    assert (bf16.gpus, w4.gpus) == (4, 1)


def test_smallest_tensor_parallel_size_that_fits_is_chosen() -> None:
    weights = predict_weights_bytes(LLAMA_8B, "bf16")
    result = size_variant(LLAMA_8B, weights, SHORT, "nvidia-t4")
    assert result.fits and result.gpus == 2
    smaller = size_variant(LLAMA_8B, weights, SHORT, "nvidia-t4", gpu_count=1)
    assert not smaller.fits


def test_tensor_parallel_size_must_divide_heads() -> None:
    qwen = shape_of("Qwen2.5-7B")  # 28 heads: 8 GPUs cannot split them
    weights = predict_weights_bytes(qwen, "bf16")
    huge = ServingSettings(max_model_len=131072, max_num_seqs=16)
    result = size_variant(qwen, weights, huge, "nvidia-l4")
    assert not result.fits and result.tensor_parallel_size == 4
    forced = size_variant(qwen, weights, SHORT, "nvidia-l4", gpu_count=8)
    assert not forced.fits and "28 attention heads" in forced.reason


def test_each_row_parallel_layer_splits_into_whole_groups_of_its_own_size() -> None:
    """SmolLM2 at the default W4A16 groups: 64 on the 576-wide layers (o_proj among
    them), 128 on down_proj. Three GPUs split o_proj into 192 = 3 x 64 and down_proj into
    512 = 4 x 128: whole groups; nine split down_proj into 1536 / 9, no whole group."""
    smol = shape_of("SmolLM2-135M").model_copy(update={"weight_group_sizes": {576: 64, 1536: 128}})
    assert size_variant(smol, 10**8, SHORT, "nvidia-l4", gpu_count=3).fits
    nine = tensor_parallel_problem(smol, 9)
    assert nine and "MLP input (1536)" in nine and "groups of 128" in nine


def test_too_large_says_so_with_numbers() -> None:
    weights = predict_weights_bytes(LLAMA_70B, "bf16")
    long = ServingSettings(max_model_len=32768, max_num_seqs=8)
    result = size_variant(LLAMA_70B, weights, long, "nvidia-l4")
    assert not result.fits
    assert result.gpus == 8 and result.cpu_offload_gb == 0
    assert "needs 28.6 GiB per GPU" in result.reason
    assert "gives 19.8 GiB per GPU" in result.reason
    assert "allow CPU offload" in result.reason


def test_cpu_offload_when_allowed_and_weights_do_not_fit() -> None:
    weights = predict_weights_bytes(LLAMA_70B, "bf16")
    long = ServingSettings(max_model_len=32768, max_num_seqs=8)
    result = size_variant(LLAMA_70B, weights, long, "nvidia-l4", allow_cpu_offload=True)
    assert result.fits and result.gpus == 8
    assert result.cpu_offload_gb == 9
    args = result.vllm_args
    assert args[args.index("--cpu-offload-gb") + 1] == "9"
    assert result.per_device.total_bytes <= result.per_device.budget_bytes
    assert result.per_device.offloaded_weights_bytes == 9 * GiB
    # the host keeps the offloaded weights of all 8 GPUs
    host_request = int(result.resources["requests"]["memory"].removesuffix("Gi"))
    assert host_request >= 8 * 9


def test_offload_cannot_help_when_kv_cache_alone_is_too_big() -> None:
    weights = predict_weights_bytes(LLAMA_70B, "W4A16")
    huge = ServingSettings(max_model_len=131072, max_num_seqs=64)
    result = size_variant(LLAMA_70B, weights, huge, "nvidia-l4", allow_cpu_offload=True)
    assert not result.fits and "even with CPU offload" in result.reason


def test_offload_not_used_when_it_fits() -> None:
    weights = predict_weights_bytes(LLAMA_8B, "W4A16")
    result = size_variant(LLAMA_8B, weights, SHORT, "nvidia-l4", allow_cpu_offload=True)
    assert result.fits and result.cpu_offload_gb == 0


def test_cpu_target_sets_kv_cache_space_and_memory() -> None:
    smol = shape_of("SmolLM2-135M")
    weights = predict_weights_bytes(smol, "bf16")
    settings = ServingSettings(max_model_len=8192, max_num_seqs=8)
    result = size_variant(smol, weights, settings, "cpu")
    assert result.fits and result.device == "cpu" and result.gpus == 0
    kv_gib = -(-8 * 8192 * 22.5 * 1024 // GiB)
    assert result.env == {"VLLM_CPU_KVCACHE_SPACE": str(int(kv_gib))}
    assert "--gpu-memory-utilization" not in result.vllm_args
    assert "nvidia.com/gpu" not in result.resources["requests"]
    request = int(result.resources["requests"]["memory"].removesuffix("Gi"))
    assert request * GiB >= weights + kv_gib * GiB
    assert result.node_selector == {} and result.tolerations == []


def test_cpu_target_too_small_does_not_fit() -> None:
    catalog = catalog_with_overrides({"cpu": {"memory": "8Gi"}})
    weights = predict_weights_bytes(LLAMA_8B, "bf16")
    result = size_variant(LLAMA_8B, weights, SHORT, "cpu", catalog=catalog)
    assert not result.fits and "host memory" in result.reason


def test_max_model_len_beyond_the_model_is_an_error() -> None:
    smol = shape_of("SmolLM2-135M")
    with pytest.raises(SizingError, match="max_position_embeddings 8192"):
        size_variant(smol, 10**8, ServingSettings(max_model_len=16384), "nvidia-l4")


def test_unknown_gpu_lists_known_products() -> None:
    with pytest.raises(SizingError, match="nvidia-h100-80gb"):
        size_variant(LLAMA_8B, 10**9, SHORT, "nvidia-b300")


def test_gpu_type_can_be_passed_directly() -> None:
    gpu = GpuType(name="lab-gpu", memory_bytes=48 * GiB, max_per_node=2)
    result = size_variant(LLAMA_8B, predict_weights_bytes(LLAMA_8B, "bf16"), SHORT, gpu)
    assert result.fits and result.gpu == "lab-gpu" and result.node_selector == {}


def test_max_per_node_limits_tensor_parallel_size() -> None:
    catalog = catalog_with_overrides({"nvidia-l4": {"maxPerNode": 2}})
    weights = predict_weights_bytes(LLAMA_70B, "W4A16")
    result = size_variant(LLAMA_70B, weights, SHORT, "nvidia-l4", catalog=catalog)
    assert not result.fits and result.gpus == 2


def test_result_serialises_to_json() -> None:
    result = size_variant(LLAMA_8B, 10**9, SHORT, GPU_CATALOG["nvidia-h100-80gb"])
    data = json.loads(result.model_dump_json())
    for key in (
        "gpus",
        "tensor_parallel_size",
        "weights_bytes",
        "kv_cache_bytes",
        "overhead_bytes",
        "total_bytes",
        "fits",
        "reason",
        "cpu_offload_gb",
        "vllm_args",
        "env",
        "resources",
        "node_selector",
        "tolerations",
    ):
        assert key in data
    assert data["per_device"]["total_bytes"] > 0


def test_group_alignment_rules_out_splitting_qwen_72b() -> None:
    qwen = shape_of("Qwen2.5-72B")
    qwen = qwen.model_copy(
        update={"weight_group_sizes": {w.in_features: 128 for w in qwen.linear_weights()}}
    )
    weights = predict_weights_bytes(qwen, "W4A16")
    settings = ServingSettings(max_model_len=4096, max_num_seqs=32)
    result = size_variant(qwen, weights, settings, "nvidia-a100-80gb")
    assert not result.fits and result.gpus == 1
    assert "29568" in result.reason and "groups of 128" in result.reason
    per_channel = qwen.model_copy(update={"weight_group_sizes": {}})
    assert size_variant(per_channel, weights, settings, "nvidia-a100-80gb").gpus == 2
