"""What a sizing decision means for the serving pod: vLLM arguments, env, resources."""

from __future__ import annotations

from typing import Any

from modelpress.sizing.catalog import GPU_RESOURCE, GpuType
from modelpress.sizing.settings import ServingSettings
from modelpress.sizing.units import GiB, ceil_gib, memory_quantity

#: Host memory of the API server and engine-core processes (Python, PyTorch, tokenizer).
HOST_RUNTIME_BYTES = 3 * GiB
#: Host memory of each tensor-parallel worker process vLLM spawns when TP > 1.
HOST_WORKER_BYTES = 2 * GiB
#: Memory-backed /dev/shm for tensor-parallel workers; it counts against the pod's memory.
SHM_BYTES = 2 * GiB
#: CPU cores for a GPU server: API server and engine core, plus one per GPU worker.
BASE_CPU_CORES = 2
KV_CACHE_SPACE_ENV = "VLLM_CPU_KVCACHE_SPACE"


def shm_bytes(tensor_parallel_size: int) -> int:
    """Shared memory the pod should mount at /dev/shm (none needed without TP)."""
    return SHM_BYTES if tensor_parallel_size > 1 else 0


def gpu_vllm_args(
    settings: ServingSettings, tensor_parallel_size: int, cpu_offload_gb: int
) -> list[str]:
    """vLLM arguments for GPU serving that pin down every memory-relevant knob."""
    args = [
        "--tensor-parallel-size", str(tensor_parallel_size),
        "--max-model-len", str(settings.max_model_len),
        "--max-num-seqs", str(settings.max_num_seqs),
        "--max-num-batched-tokens", str(settings.batched_tokens),
        "--gpu-memory-utilization", f"{settings.gpu_memory_utilization:g}",
        "--kv-cache-dtype", settings.kv_cache_dtype,
    ]  # fmt: skip
    if cpu_offload_gb:
        args += ["--cpu-offload-gb", str(cpu_offload_gb)]
    if settings.enforce_eager:
        args.append("--enforce-eager")
    return args


def cpu_vllm_args(settings: ServingSettings) -> list[str]:
    """vLLM arguments for CPU serving; the KV cache size goes in the environment.

    Always eager: on CPU, torch.compile's warm-up takes minutes (measured 116-233 s
    for SmolLM2 against 26-51 s eager) and gains little for the sizes CPUs serve."""
    return [
        "--max-model-len", str(settings.max_model_len),
        "--max-num-seqs", str(settings.max_num_seqs),
        "--max-num-batched-tokens", str(settings.batched_tokens),
        "--kv-cache-dtype", settings.kv_cache_dtype,
        "--enforce-eager",
    ]  # fmt: skip


def cpu_env(kv_cache_bytes: int) -> dict[str, str]:
    """vLLM CPU reserves exactly VLLM_CPU_KVCACHE_SPACE GiB for the KV cache."""
    return {KV_CACHE_SPACE_ENV: str(ceil_gib(kv_cache_bytes))}


def gpu_host_memory_bytes(tensor_parallel_size: int, cpu_offload_bytes: int) -> int:
    """Host memory a GPU server keeps while serving: processes, /dev/shm, offloaded weights."""
    workers = tensor_parallel_size * HOST_WORKER_BYTES if tensor_parallel_size > 1 else 0
    return HOST_RUNTIME_BYTES + workers + shm_bytes(tensor_parallel_size) + cpu_offload_bytes


def gpu_resources(
    gpu: GpuType, tensor_parallel_size: int, host_bytes: int, weights_bytes: int
) -> dict[str, Any]:
    """Requests and limits of a GPU serving container.

    The memory limit adds the artifact's size to the request: safetensors are read
    through the page cache while loading, and that cache is charged to the pod.
    """
    gpus = str(tensor_parallel_size)
    cores = gpu.cpu_cores or BASE_CPU_CORES + tensor_parallel_size
    return {
        "requests": {
            "cpu": str(cores),
            "memory": memory_quantity(host_bytes),
            GPU_RESOURCE: gpus,
        },
        "limits": {
            "memory": memory_quantity(host_bytes + weights_bytes),
            GPU_RESOURCE: gpus,
        },
    }


def cpu_resources(target: GpuType, serving_bytes: int, weights_bytes: int) -> dict[str, Any]:
    """Requests and limits of a CPU serving container (weights and KV cache live in RAM)."""
    cores = target.cpu_cores or 8
    return {
        "requests": {"cpu": str(cores), "memory": memory_quantity(serving_bytes)},
        "limits": {"memory": memory_quantity(serving_bytes + weights_bytes)},
    }


def scheduling(target: GpuType) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Node selector and tolerations that put the pod on the target's nodes."""
    return dict(target.node_selector), [dict(t) for t in target.tolerations]
