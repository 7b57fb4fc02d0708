"""GPU products sizing can place a model on, and the `cpu` pseudo-target.

Memory is what the CUDA driver reports as the device's total (what vLLM
multiplies by --gpu-memory-utilization), a little below the marketed size; the
marketed size is kept as `nominal_memory_bytes` for comparisons with tools that
use it. Node selectors use the `nvidia.com/gpu.product` label that NVIDIA GPU
feature discovery sets. Every field can be overridden, and products added, from
the Helm values' `gpuCatalog` map (see `catalog_with_overrides`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelpress.problems import describe
from modelpress.sizing.errors import SizingError
from modelpress.sizing.units import GiB, parse_bytes

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
CPU_TARGET = "cpu"

#: Tolerates the taint GPU node pools commonly carry (GKE adds it for GPU pools).
DEFAULT_GPU_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
)


class GpuType(BaseModel):
    """One serving target: a GPU product, or `cpu` whose memory is host RAM."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["gpu", "cpu"] = "gpu"
    memory_bytes: int = Field(gt=0)
    nominal_memory_bytes: int | None = Field(default=None, gt=0)
    max_per_node: int = Field(default=8, gt=0)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    cpu_cores: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _cpu_has_one_device(self) -> GpuType:
        if self.kind == "cpu" and self.max_per_node != 1:
            raise ValueError("the cpu target serves on one host: max_per_node must be 1")
        return self

    @property
    def product_label(self) -> str | None:
        """The `nvidia.com/gpu.product` value nodes with this GPU carry."""
        return self.node_selector.get(GPU_PRODUCT_LABEL)

    @property
    def nominal_memory(self) -> int:
        """Marketed memory size (falls back to the usable size)."""
        return self.nominal_memory_bytes or self.memory_bytes


def _gpu(name: str, usable_gib: float, nominal_gib: float, label: str) -> GpuType:
    return GpuType(
        name=name,
        memory_bytes=int(usable_gib * GiB),
        nominal_memory_bytes=int(nominal_gib * GiB),
        node_selector={GPU_PRODUCT_LABEL: label},
        tolerations=[dict(t) for t in DEFAULT_GPU_TOLERATIONS],
    )


_DEFAULTS = (
    _gpu("nvidia-t4", 14.75, 16, "Tesla-T4"),
    _gpu("nvidia-l4", 22.05, 24, "NVIDIA-L4"),
    _gpu("nvidia-a10g", 22.19, 24, "NVIDIA-A10G"),
    _gpu("nvidia-l40s", 44.39, 48, "NVIDIA-L40S"),
    _gpu("nvidia-a100-40gb", 39.39, 40, "NVIDIA-A100-SXM4-40GB"),
    _gpu("nvidia-a100-80gb", 79.15, 80, "NVIDIA-A100-SXM4-80GB"),
    _gpu("nvidia-h100-80gb", 79.11, 80, "NVIDIA-H100-80GB-HBM3"),
    _gpu("nvidia-h200", 139.8, 141, "NVIDIA-H200"),
    GpuType(name=CPU_TARGET, kind="cpu", memory_bytes=64 * GiB, max_per_node=1, cpu_cores=8),
)

#: The default catalog: product name -> GpuType. Read-only; derive new ones with
#: `catalog_with_overrides`.
GPU_CATALOG: Mapping[str, GpuType] = MappingProxyType({gpu.name: gpu for gpu in _DEFAULTS})

# Helm values keys (camelCase) -> GpuType fields.
_VALUE_KEYS = {
    "memory": "memory_bytes",
    "nominalMemory": "nominal_memory_bytes",
    "maxPerNode": "max_per_node",
    "nodeSelector": "node_selector",
    "tolerations": "tolerations",
    "cpuCores": "cpu_cores",
    "kind": "kind",
}


def catalog_with_overrides(
    overrides: Mapping[str, Mapping[str, Any]] | None,
    base: Mapping[str, GpuType] = GPU_CATALOG,
) -> dict[str, GpuType]:
    """`base` with entries changed or added from a Helm-values style map.

    Each entry may set `memory` and `nominalMemory` (bytes or a quantity such as
    "24Gi"), `productLabel` (the `nvidia.com/gpu.product` value), `nodeSelector`,
    `tolerations`, `maxPerNode`, `cpuCores` and `kind` (`gpu` or `cpu`). A new
    product needs at least `memory`.
    """
    catalog = dict(base)
    for name, entry in (overrides or {}).items():
        if not isinstance(entry, Mapping):
            raise SizingError(f"gpuCatalog.{name} must be a map of settings, not {entry!r}")
        unknown = set(entry) - set(_VALUE_KEYS) - {"productLabel"}
        if unknown:
            allowed = ", ".join(sorted([*_VALUE_KEYS, "productLabel"]))
            raise SizingError(
                f"gpuCatalog.{name} has unknown keys {sorted(unknown)}; allowed: {allowed}"
            )
        fields: dict[str, Any] = catalog[name].model_dump() if name in catalog else {"name": name}
        if name not in catalog:
            if "memory" not in entry:
                raise SizingError(f"gpuCatalog.{name} is a new product: give its memory")
            if entry.get("kind", "gpu") == "gpu":
                fields["tolerations"] = [dict(t) for t in DEFAULT_GPU_TOLERATIONS]
        # productLabel last: it adds to a nodeSelector given in the same entry.
        for key, value in sorted(entry.items(), key=lambda item: item[0] == "productLabel"):
            if key == "productLabel":
                fields["node_selector"] = {
                    **fields.get("node_selector", {}),
                    GPU_PRODUCT_LABEL: value,
                }
            elif key in ("memory", "nominalMemory"):
                fields[_VALUE_KEYS[key]] = parse_bytes(value)
            else:
                fields[_VALUE_KEYS[key]] = value
        try:
            catalog[name] = GpuType.model_validate(fields)
        except ValidationError as error:
            raise SizingError(f"gpuCatalog.{name}: {describe(error, limit=1)}") from None
    return catalog


def find_gpu(product: str | GpuType, catalog: Mapping[str, GpuType] = GPU_CATALOG) -> GpuType:
    """The catalog entry for `product`; an unknown name lists the known ones."""
    if isinstance(product, GpuType):
        return product
    for key in (str(product).strip(), str(product).strip().lower()):
        if key in catalog:
            return catalog[key]
    known = ", ".join(sorted(catalog))
    raise SizingError(f"unknown GPU product {product!r}; use one of: {known}")
