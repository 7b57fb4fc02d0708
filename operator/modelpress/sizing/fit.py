"""Choose how many GPUs a variant needs and describe the serving pod.

The smallest tensor-parallel size among 1, 2, 4, 8 (up to the product's GPUs per
node) whose per-GPU footprint fits under gpuMemoryUtilization wins. A size must
divide the attention heads, and either divide the KV heads or be a multiple of
them (vLLM then replicates KV heads); for group-quantized weights the row-parallel
inputs must split into whole groups. When nothing fits, the result says so with
the numbers; with CPU offload allowed, the largest size offloads the weights that
do not fit instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, computed_field

from modelpress.sizing import memory, pod
from modelpress.sizing.catalog import GPU_CATALOG, GpuType, find_gpu
from modelpress.sizing.errors import SizingError
from modelpress.sizing.settings import ServingSettings
from modelpress.sizing.shape import ModelShape
from modelpress.sizing.units import GiB, gib

TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)


class DeviceMemory(BaseModel):
    """Memory on one device (one GPU, or the host for CPU serving), in bytes."""

    model_config = ConfigDict(frozen=True)

    weights_bytes: int
    kv_cache_bytes: int
    activation_bytes: int
    cuda_graph_bytes: int
    runtime_bytes: int
    budget_bytes: int
    offloaded_weights_bytes: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def overhead_bytes(self) -> int:
        """Activations, CUDA graphs and runtime: what is neither weights nor KV cache."""
        return self.activation_bytes + self.cuda_graph_bytes + self.runtime_bytes

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_bytes(self) -> int:
        """Everything the device holds; must stay within `budget_bytes`."""
        return self.weights_bytes + self.kv_cache_bytes + self.overhead_bytes


class SizingResult(BaseModel):
    """How to serve one variant on one target, or why it cannot be served there.

    Byte totals are summed over all GPUs; `per_device` is one GPU (or the host).
    `total_bytes` is the whole footprint, offloaded weights included.
    """

    model_config = ConfigDict(frozen=True)

    gpu: str
    device: Literal["gpu", "cpu"]
    fits: bool
    reason: str
    gpus: int
    """GPUs of one replica, over all its nodes."""
    tensor_parallel_size: int
    pipeline_parallel_size: int = 1
    nodes: int = 1
    """Nodes one replica spans (pipeline parallel across them): 1 within one node."""
    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    total_bytes: int
    kv_cache_bytes_per_token: int
    cpu_offload_gb: int
    per_device: DeviceMemory
    max_model_len: int
    max_num_seqs: int
    kv_cache_dtype: str
    gpu_memory_utilization: float | None
    vllm_args: list[str]
    env: dict[str, str]
    resources: dict[str, Any]
    """Of one pod: with several nodes, each node's pod holds tensorParallelSize GPUs."""
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]


def tensor_parallel_problem(shape: ModelShape, size: int) -> str | None:
    """Why vLLM cannot shard `shape` over `size` GPUs, or None when it can."""
    heads, kv_heads = shape.num_attention_heads, shape.num_key_value_heads
    if heads % size:
        return f"tensor-parallel size {size} does not divide the {heads} attention heads"
    if kv_heads % size and size % kv_heads:
        return (
            f"tensor-parallel size {size} neither divides the {kv_heads} KV heads "
            "nor is a multiple of them"
        )
    if size == 1:
        return None
    for name, width in (  # the row-parallel layers: down_proj and o_proj split their inputs
        ("MLP", shape.expert_intermediate_size),
        ("attention output", shape.num_attention_heads * shape.head_dim),
    ):
        group = shape.weight_group_sizes.get(width)
        if group and width % (size * group):
            return (
                f"tensor-parallel size {size} splits the {name} input ({width}) "
                f"into pieces that are not whole groups of {group}"
            )
    return None


def size_variant(
    shape: ModelShape,
    weights_bytes: int,
    settings: ServingSettings,
    gpu: str | GpuType,
    catalog: Mapping[str, GpuType] = GPU_CATALOG,
    allow_cpu_offload: bool = False,
    gpu_count: int | None = None,
    max_nodes: int = 1,
) -> SizingResult:
    """Size a vLLM server for a variant whose weights take `weights_bytes`; past one node
    (up to `max_nodes`), pipeline parallel across nodes (`modelpress.sizing.nodes`).

    Raises SizingError for inputs a user must correct (unknown product,
    maxModelLen beyond the model's context, a non-positive weight size). A
    variant that is valid but too large returns `fits=False` with a reason.
    """
    target = find_gpu(gpu, catalog)
    _check_inputs(shape, weights_bytes, settings, gpu_count)
    if target.kind == "cpu":
        return _size_on_cpu(shape, weights_bytes, settings, target)
    return _size_on_gpus(
        shape, weights_bytes, settings, target, allow_cpu_offload, gpu_count, max_nodes
    )


def device_memory(
    shape: ModelShape,
    weights_bytes: int,
    settings: ServingSettings,
    target: GpuType,
    tensor_parallel_size: int = 1,
) -> DeviceMemory:
    """The footprint on one device at a given tensor-parallel size (no offload)."""
    if target.kind == "cpu":
        kv_needed = memory.kv_cache_bytes(shape, settings)
        return DeviceMemory(
            weights_bytes=weights_bytes,
            kv_cache_bytes=int(pod.cpu_env(kv_needed)[pod.KV_CACHE_SPACE_ENV]) * GiB,
            activation_bytes=memory.activation_bytes(shape, settings),
            cuda_graph_bytes=0,
            runtime_bytes=pod.HOST_RUNTIME_BYTES,
            budget_bytes=target.memory_bytes,
        )
    return DeviceMemory(
        weights_bytes=math.ceil(weights_bytes / tensor_parallel_size),
        kv_cache_bytes=memory.kv_cache_bytes(shape, settings, tensor_parallel_size),
        activation_bytes=memory.activation_bytes(shape, settings, tensor_parallel_size),
        cuda_graph_bytes=memory.cuda_graph_bytes(settings),
        runtime_bytes=memory.runtime_bytes(tensor_parallel_size),
        budget_bytes=int(target.memory_bytes * settings.gpu_memory_utilization),
    )


def _check_inputs(
    shape: ModelShape, weights_bytes: int, settings: ServingSettings, gpu_count: int | None
) -> None:
    if not isinstance(weights_bytes, int) or weights_bytes <= 0:
        raise SizingError(f"weights bytes must be a positive integer, got {weights_bytes!r}")
    if settings.max_model_len > shape.max_position_embeddings:
        raise SizingError(
            f"maxModelLen {settings.max_model_len} exceeds the model's max_position_embeddings "
            f"{shape.max_position_embeddings}; lower maxModelLen"
        )
    if gpu_count is not None and gpu_count <= 0:
        raise SizingError(f"GPU count must be a positive integer, got {gpu_count}")


def _size_on_gpus(
    shape: ModelShape,
    weights_bytes: int,
    settings: ServingSettings,
    target: GpuType,
    allow_cpu_offload: bool,
    gpu_count: int | None,
    max_nodes: int = 1,
) -> SizingResult:
    from modelpress.sizing.nodes import MAX_NODES, plan_nodes

    sizes = (
        [gpu_count] if gpu_count else [n for n in TENSOR_PARALLEL_SIZES if n <= target.max_per_node]
    )
    problems = {size: tensor_parallel_problem(shape, size) for size in sizes}
    if gpu_count and gpu_count > target.max_per_node:
        problems[gpu_count] = (
            f"{gpu_count} GPUs exceed the {target.max_per_node} {target.name} GPUs of one node"
        )
    usable = [size for size in sizes if problems[size] is None]
    if not usable:
        reason = "; ".join(p for p in problems.values() if p) + "; choose another GPU count"
        return _result(shape, weights_bytes, settings, target, sizes[-1], False, reason)

    for size in usable:
        per_gpu = device_memory(shape, weights_bytes, settings, target, size)
        if per_gpu.total_bytes <= per_gpu.budget_bytes:
            reason = (
                f"fits on {size}x {target.name}: {gib(per_gpu.total_bytes):.1f} GiB of "
                f"{gib(per_gpu.budget_bytes):.1f} GiB per GPU"
            )
            return _result(shape, weights_bytes, settings, target, size, True, reason, per_gpu)

    largest = usable[-1]
    per_gpu = device_memory(shape, weights_bytes, settings, target, largest)
    needs = (
        f"needs {gib(per_gpu.total_bytes):.1f} GiB per GPU at tensor-parallel size {largest} "
        f"(weights {gib(per_gpu.weights_bytes):.1f} + KV cache {gib(per_gpu.kv_cache_bytes):.1f} "
        f"+ overhead {gib(per_gpu.overhead_bytes):.1f} GiB); "
        f"{'the requested' if gpu_count else 'the largest'} option, {largest}x "
        f"{target.name} at gpuMemoryUtilization {settings.gpu_memory_utilization:g}, gives "
        f"{gib(per_gpu.budget_bytes):.1f} GiB per GPU"
    )
    ruled_out = [problems[size] for size in sizes if size > largest and problems[size]]
    if ruled_out:
        needs += f" (larger sizes are ruled out: {ruled_out[0]})"
    across = None if gpu_count else plan_nodes(shape, weights_bytes, settings, target, MAX_NODES)
    if across is not None and across.nodes <= max_nodes:
        stage = across.per_gpu
        reason = (
            f"fits on {across.nodes} nodes of {across.tensor_parallel_size}x {target.name} "
            f"(tensor parallel {across.tensor_parallel_size} x pipeline parallel "
            f"{across.pipeline_parallel_size}): {gib(stage.total_bytes):.1f} GiB of "
            f"{gib(stage.budget_bytes):.1f} GiB per GPU"
        )
        return _result(
            shape, weights_bytes, settings, target, across.tensor_parallel_size, True,
            reason, stage, pipeline_parallel_size=across.pipeline_parallel_size,
        )  # fmt: skip
    spanning = ""
    if across is not None:
        spanning = (
            f", or let it span {across.nodes} nodes of {across.tensor_parallel_size}x "
            f"{target.name} (tensor parallel {across.tensor_parallel_size} x pipeline "
            f"parallel {across.pipeline_parallel_size}) with serving.maxNodes: {across.nodes}"
        )
    room = per_gpu.budget_bytes - per_gpu.kv_cache_bytes - per_gpu.overhead_bytes
    if allow_cpu_offload and room > 0:
        offload_gb = min(
            math.ceil((per_gpu.weights_bytes - room) / GiB), math.ceil(per_gpu.weights_bytes / GiB)
        )
        offloaded = min(offload_gb * GiB, per_gpu.weights_bytes)
        per_gpu = per_gpu.model_copy(
            update={
                "weights_bytes": per_gpu.weights_bytes - offloaded,
                "offloaded_weights_bytes": offloaded,
            }
        )
        reason = (
            f"fits on {largest}x {target.name} only by offloading {offload_gb} GiB of weights "
            f"per GPU to host memory (slower); without offload it {needs}"
        )
        return _result(
            shape, weights_bytes, settings, target, largest, True, reason, per_gpu, offload_gb
        )
    advice = (
        "lower maxModelLen or maxNumSeqs, use kvCacheDtype fp8, a smaller variant or a larger GPU"
    )
    if allow_cpu_offload:
        reason = (
            f"{needs}; even with CPU offload the KV cache and overhead alone do not fit: "
            f"{advice}{spanning}"
        )
    else:
        offload = ", allow CPU offload" if spanning else ", or allow CPU offload"
        reason = f"{needs}: {advice}{offload}{spanning}"
    return _result(shape, weights_bytes, settings, target, largest, False, reason, per_gpu)


def _size_on_cpu(
    shape: ModelShape, weights_bytes: int, settings: ServingSettings, target: GpuType
) -> SizingResult:
    host = device_memory(shape, weights_bytes, settings, target)
    if host.total_bytes <= host.budget_bytes:
        fits = True
        reason = (
            f"fits in host memory: {gib(host.total_bytes):.1f} GiB of "
            f"{gib(host.budget_bytes):.1f} GiB"
        )
    else:
        fits = False
        reason = (
            f"needs {gib(host.total_bytes):.1f} GiB of host memory (weights "
            f"{gib(host.weights_bytes):.1f} + KV cache {gib(host.kv_cache_bytes):.1f} + overhead "
            f"{gib(host.overhead_bytes):.1f} GiB); the {target.name} target gives "
            f"{gib(host.budget_bytes):.1f} GiB: lower maxModelLen or maxNumSeqs, use a smaller "
            "variant, or raise the cpu target's memory in the GPU catalog"
        )
    return _result(shape, weights_bytes, settings, target, 1, fits, reason, host)


def _result(
    shape: ModelShape,
    weights_bytes: int,
    settings: ServingSettings,
    target: GpuType,
    size: int,
    fits: bool,
    reason: str,
    per_device: DeviceMemory | None = None,
    cpu_offload_gb: int = 0,
    pipeline_parallel_size: int = 1,
) -> SizingResult:
    per_device = per_device or device_memory(shape, weights_bytes, settings, target, size)
    pp = pipeline_parallel_size
    node_selector, tolerations = pod.scheduling(target)
    on_cpu = target.kind == "cpu"
    devices = 1 if on_cpu else size * pp
    kv_needed = (
        per_device.kv_cache_bytes * devices
        if pp > 1
        else memory.kv_cache_bytes(shape, settings, 1 if on_cpu else size) * devices
    )
    if on_cpu:
        vllm_args = pod.cpu_vllm_args(settings)
        env = pod.cpu_env(kv_needed)
        resources = pod.cpu_resources(target, per_device.total_bytes, weights_bytes)
    else:
        vllm_args = pod.gpu_vllm_args(settings, size, cpu_offload_gb)
        if pp > 1:
            vllm_args += ["--pipeline-parallel-size", str(pp)]
        env = {}
        host = pod.gpu_host_memory_bytes(size, per_device.offloaded_weights_bytes * size)
        # Each node's pod reads its own pipeline stage's share of the weights.
        resources = pod.gpu_resources(target, size, host, math.ceil(weights_bytes / pp))
    overhead = per_device.overhead_bytes * devices
    return SizingResult(
        gpu=target.name,
        device=target.kind,
        fits=fits,
        reason=reason,
        gpus=0 if on_cpu else size * pp,
        tensor_parallel_size=size,
        pipeline_parallel_size=pp,
        nodes=pp,
        weights_bytes=weights_bytes,
        kv_cache_bytes=kv_needed,
        overhead_bytes=overhead,
        total_bytes=weights_bytes + kv_needed + overhead,
        kv_cache_bytes_per_token=memory.kv_cache_bytes_per_token(shape, settings.kv_cache_dtype),
        cpu_offload_gb=cpu_offload_gb,
        per_device=per_device,
        max_model_len=settings.max_model_len,
        max_num_seqs=settings.max_num_seqs,
        kv_cache_dtype=settings.kv_cache_dtype,
        gpu_memory_utilization=None if on_cpu else settings.gpu_memory_utilization,
        vllm_args=vllm_args,
        env=env,
        resources=resources,
        node_selector=node_selector,
        tolerations=tolerations,
    )
