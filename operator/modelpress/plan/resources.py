"""How much a compression Job needs: host memory, GPU memory, scratch space.

Estimates from the base model (its config.json and weight bytes), not guesses:
- the chain holds the model in bf16 on the host (2 bytes per parameter), plus a
  quarter for the compressed copy being written, plus headroom;
- gptq, awq and pruning cache calibration activations for one layer at a time
  (samples x sequence length x hidden size, in and out); an ffn-width prune also
  keeps the Gram matrices of MLP activations its refit solves from (up to 4 GiB);
- on a GPU, llmcompressor moves one decoder layer at a time onto the device, so
  the GPU must hold the largest layer, its Hessians and the activations;
- distillation trains an fp32 student with AdamW beside the teacher, on the pod's
  GPUs (one process each) or else on its CPU, replicated in every process or, when
  replicas would not fit a GPU, sharded over all of them (`sizing.training`). On a
  GPU node each process first loads the model into host memory: the bf16 base, the
  fp32 student and, sharded, the copy FSDP splits (HOST_BYTES_BEFORE_GPU).
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
from modelpress.sizing.chain import (
    ChainError,
    ffn_channels_kept,
    ffn_refit_bytes,
    layers_to_drop,
)
from modelpress.sizing.training import Sharding, TrainingLayout, choose_layout
from modelpress.sizing.units import GiB, gib, memory_quantity, parse_bytes

BF16_BYTES = 2
DISTILL_BYTES_PER_PARAMETER = 18
"""Training state per parameter when the base model's config is missing: a bf16 teacher,
fp32 student weights, gradients and AdamW moments."""
HOST_BYTES_BEFORE_GPU: dict[Sharding, int] = {"replicate": 2 + 4, "full": 2 + 4 + 4}
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
    sharding: Sharding = "replicate"
    """How a distillation over several processes lays out its training state."""


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
    """The largest working set a step keeps beside the model: calibration activations, and
    for an ffn-width prune the statistics of its refit."""
    if shape is None:
        return 0
    largest = 0
    for step in variant.chain:
        calibration = step_calibration(spec, step)
        if calibration is None:
            continue
        tokens = calibration.samples * calibration.sequence_length
        working = 2 * tokens * shape.hidden_size * BF16_BYTES
        if step.prune is not None and step.prune.method == "ffn-width":
            working += ffn_refit_bytes(shape.intermediate_size, shape.num_hidden_layers)
        largest = max(largest, working)
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

    target = config.catalog.get(gpu.product) if gpu is not None else None
    on_gpus = target is not None and target.kind == "gpu"
    gpu_memory = target.memory_bytes if target is not None and on_gpus else None
    layouts = _training_layouts(spec, variant, shape, gpu_memory)
    training = max(layouts, key=lambda t: t.bytes_per_process, default=None)  # it must fit
    # the gang's state is sharded when any of its distill steps needs it
    sharding: Sharding = "full" if any(t.sharding == "full" for t in layouts) else "replicate"
    processes = spec.compression.processes_per_node if variant.gang_distills else 1
    if training is not None:  # on GPUs each process loads the model first; on CPU it trains
        per_process = (
            params * HOST_BYTES_BEFORE_GPU[sharding] if on_gpus else training.bytes_per_process
        )
        host = int(per_process * processes * WRITE_OVERHEAD) + activations + headroom
    elif gpu is None or distill:
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
            elif training is not None and training.bytes_per_process > target.memory_bytes:
                problem = Verdict(
                    Reason.COMPRESSION_DOES_NOT_FIT,
                    f"distillation needs {gib(training.bytes_per_process):.1f} GiB on each of "
                    f"its {training.world_size} GPUs ({training.sharding} training state, "
                    f"activations); a {target.name} has {gib(target.memory_bytes):.1f} GiB: "
                    + (
                        "after quantize it trains on one GPU, so use"
                        if training.quantized
                        else "use more GPUs (spec.compression.gpu.count, nodes),"
                    )
                    + " a larger GPU, or a smaller batchSize or sequenceLength",
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
        gpu_bytes=max(gpu_bytes, training.bytes_per_process if training and on_gpus else 0),
        problem=problem,
        sharding=sharding,
    )


def training_processes(spec: CompressedModelSpec, variant: Variant) -> int:
    """Processes the variant's Job trains on: one per GPU of every node when it distills
    before quantizing (one on a node without GPUs), else one."""
    if not variant.gang_distills:
        return 1
    return spec.compression.nodes * spec.compression.processes_per_node


def _training_layouts(
    spec: CompressedModelSpec,
    variant: Variant,
    shape: ModelShape | None,
    gpu_memory: int | None,
) -> list[TrainingLayout]:
    """The layout of each of the chain's distill steps over the processes that train it;
    none without a distill step or a model config to size them from."""
    if shape is None:
        return []
    world = training_processes(spec, variant)
    layouts = []
    student = shape
    # a quantized student trains on rank 0 alone, with the whole batch: a gang ends at
    # the quantize step (compress.distributed.going_on)
    quantized = False
    for index, step in enumerate(variant.chain):
        calibration = step_calibration(spec, step)
        if step.distill is not None and calibration is not None:
            if index == 0 and step.distill.student_layers:
                student = _with_layers(shape, step.distill.student_layers)
            layouts.append(
                choose_layout(
                    student,
                    shape,
                    world_size=1 if quantized else world,
                    batch_size=step.distill.batch_size,
                    sequence_length=calibration.sequence_length,
                    device_bytes=gpu_memory,
                    quantized=quantized,
                    precision=step.distill.precision,
                )
            )
        elif step.prune is not None:
            student = _pruned(student, step.prune.method, step.prune.fraction)
        quantized = quantized or step.quantize is not None
    return layouts


def _with_layers(shape: ModelShape, layers: int) -> ModelShape:
    sliding = min(shape.sliding_window_layers, layers)
    return shape.model_copy(update={"num_hidden_layers": layers, "sliding_window_layers": sliding})


def _pruned(shape: ModelShape, method: str, fraction: float) -> ModelShape:
    """The shape a prune step leaves (as the compressor computes it); unchanged when the
    step cannot apply, which the recipe checks report on their own."""
    try:
        if method == "layer-drop":
            layers = shape.num_hidden_layers
            return _with_layers(shape, layers - layers_to_drop(layers, fraction))
        kept = ffn_channels_kept(shape.intermediate_size, fraction)
        return shape.model_copy(update={"intermediate_size": kept})
    except ChainError:
        return shape
