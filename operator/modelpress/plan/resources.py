"""How much a compression Job needs: host memory, GPU memory, scratch space.

Estimates from the base model (its config.json and weight bytes), not guesses:
- the chain holds the model in bf16 on the host (2 bytes per parameter), plus a
  quarter for the compressed copy being written, plus headroom;
- gptq, awq and pruning cache calibration activations for one layer at a time
  (samples x sequence length x hidden size, in and out);
- distillation trains an fp32 student with AdamW next to a bf16 teacher:
  2 + 4 (weights) + 4 (gradients) + 8 (optimizer) = 18 bytes per parameter;
- on a GPU, llmcompressor moves one decoder layer at a time onto the device, so
  the GPU must hold the largest layer, its Hessians and the activations;
- distillation trains in host memory, where the engine loads the model, on GPU
  nodes too (`compress.distributed`): its 18 bytes per parameter are host memory,
  in every process of a gang (data parallel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelpress.api.reasons import Reason
from modelpress.api.spec import CompressedModelSpec, step_calibration
from modelpress.api.steps import Variant
from modelpress.config import OperatorConfig
from modelpress.plan.progress import Verdict
from modelpress.sizing import GPU_RESOURCE, ModelShape, SizingError
from modelpress.sizing.units import GiB, gib, memory_quantity, parse_bytes

BF16_BYTES = 2
DISTILL_BYTES_PER_PARAMETER = 18
WRITE_OVERHEAD = 1.25
SCRATCH_HEADROOM = 2 * GiB


@dataclass(frozen=True)
class JobResources:
    """What a compression Job's pod asks for, or why it cannot run as specified."""

    resources: dict[str, Any]
    work_dir_size: str | None
    gpu: str | None
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    host_bytes: int
    gpu_bytes: int = 0
    problem: Verdict | None = None
    """Why the chain cannot run on the requested GPU (with the numbers); None when it can."""


def parameters(shape: ModelShape | None, weights_bytes: int) -> int:
    """Parameter count from the config, else from bf16 weight bytes."""
    if shape is not None:
        return shape.parameter_count()
    return max(1, weights_bytes // BF16_BYTES)


def shape_of(config: Any) -> ModelShape | None:
    """The model's shape, or None when its config is missing or unusual."""
    if not config:
        return None
    try:
        return ModelShape.from_config(config)
    except SizingError:
        return None


def _activation_bytes(spec: CompressedModelSpec, variant: Variant, shape: ModelShape | None) -> int:
    if shape is None:
        return 0
    largest = 0
    for step in variant.chain:
        calibration = step_calibration(spec, step)
        if calibration is None:
            continue
        tokens = calibration.samples * calibration.sequence_length
        largest = max(largest, 2 * tokens * shape.hidden_size * BF16_BYTES)
    return largest


def _layer_bytes(shape: ModelShape | None, params: int) -> int:
    """One decoder layer's weights in bf16 plus the fp32 Hessians GPTQ keeps for it."""
    if shape is None:
        return params * BF16_BYTES // 8  # no config: assume at least eight layers
    layer_weights = sum(
        w.out_features * w.in_features * (w.count // shape.num_hidden_layers)
        for w in shape.linear_weights()
    )
    hessians = sum(
        w.in_features * w.in_features * 4 * (w.count // shape.num_hidden_layers)
        for w in shape.linear_weights()
    )
    return layer_weights * BF16_BYTES + hessians


def compression_resources(
    spec: CompressedModelSpec,
    variant: Variant,
    base_weights_bytes: int,
    base_config: Any,
    config: OperatorConfig,
) -> JobResources:
    """Requests, limits, scheduling and scratch space for one variant's Job."""
    shape = shape_of(base_config)
    params = parameters(shape, base_weights_bytes)
    kinds = {step.kind for step in variant.chain}
    distill = "distill" in kinds
    activations = _activation_bytes(spec, variant, shape)
    headroom = int(config.jobs.memory_headroom_gib * GiB)
    gpu = spec.compression.gpu

    processes = spec.compression.processes_per_node if distill else 1
    if gpu is None or distill:
        model = params * (DISTILL_BYTES_PER_PARAMETER * processes if distill else BF16_BYTES)
        host = int(model * WRITE_OVERHEAD) + activations + headroom
    else:
        host = int(params * BF16_BYTES * WRITE_OVERHEAD) + headroom
    gpu_bytes = _layer_bytes(shape, params) + activations if gpu is not None else 0
    if spec.compression.memory:
        host = parse_bytes(spec.compression.memory)

    requests: dict[str, Any] = {"cpu": config.jobs.default_cpu, "memory": memory_quantity(host)}
    limits: dict[str, Any] = {"memory": memory_quantity(host)}
    if config.jobs.cpu_limit:
        limits["cpu"] = config.jobs.cpu_limit
    node_selector = dict(config.jobs.node_selector)
    tolerations = [dict(t) for t in config.jobs.tolerations]
    problem: Verdict | None = None
    if gpu is not None:
        count = gpu.count or 1
        requests[GPU_RESOURCE] = str(count)
        limits[GPU_RESOURCE] = str(count)
        target = config.catalog.get(gpu.product)
        if target is None or target.kind != "gpu":
            known = ", ".join(sorted(n for n, t in config.catalog.items() if t.kind == "gpu"))
            problem = Verdict(
                Reason.UNKNOWN_GPU_PRODUCT,
                f"spec.compression.gpu.product {gpu.product!r} is not in the operator's GPU "
                f"catalog; use one of {known}, or add it to the operator's gpuCatalog",
            )
        else:
            node_selector = dict(target.node_selector)
            tolerations = [dict(t) for t in target.tolerations]
            available = target.memory_bytes * count
            if gpu_bytes > available:
                problem = Verdict(
                    Reason.COMPRESSION_DOES_NOT_FIT,
                    f"compression needs {gib(gpu_bytes):.1f} GiB of GPU memory for one layer "
                    "with its calibration data; "
                    f"{count}x {target.name} has {gib(available):.1f} GiB: choose a larger "
                    "spec.compression.gpu, more GPUs, fewer calibration samples, or compress on CPU",
                )
    if config.jobs.work_dir_size_limit:
        work_dir = config.jobs.work_dir_size_limit
    else:
        scratch = 2 * base_weights_bytes + SCRATCH_HEADROOM
        if distill:
            scratch += params * 12  # resumable checkpoints: fp32 student and optimizer state
        work_dir = f"{math.ceil(scratch / GiB)}Gi"
    return JobResources(
        resources={"requests": requests, "limits": limits},
        work_dir_size=work_dir,
        gpu=gpu.product if gpu else None,
        node_selector=node_selector,
        tolerations=tolerations,
        host_bytes=host,
        gpu_bytes=gpu_bytes,
        problem=problem,
    )
