"""The manifest metadata of a compressed variant (`api.artifact.VariantMetadata`, read by
the operator, `modelpress size` and the status).

Size figures come from the saved files themselves: `weightsBytes` is the exact
tensor bytes in the safetensors files (numel x itemsize of every tensor, packed
weights, scales and zero points included, headers excluded).
"""

from __future__ import annotations

import resource
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from modelpress.api.artifact import VariantMetadata
from modelpress.api.status import Metrics

TOOLS = ("torch", "transformers", "llmcompressor", "compressed-tensors")


def bits_per_weight(weights_bytes: int, parameters: int) -> float:
    """Effective bits per parameter: all tensor bytes x 8 / the dense parameter count.

    The count is of the model as an ordinary (unquantized) network, so the figure
    includes scales, zero points, packing and every tensor left unquantized (for
    example the embedding): 16.0 for a bf16 checkpoint, about 4.25 for the linear
    layers of a W4A16 group-64 model but more for the whole model.
    """
    return round(weights_bytes * 8 / parameters, 4) if parameters else 0.0


def tool_versions() -> dict[str, str]:
    from modelpress import __version__

    found = {"modelpress": __version__}
    for name in TOOLS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def peak_rss_bytes() -> int:
    """The largest resident memory this process has had (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def source_of(base_metadata: dict[str, Any] | None, fallback_id: str) -> dict[str, str]:
    """{id, revision} of the base model, from its manifest metadata in any of its forms."""
    source = (base_metadata or {}).get("source")
    if not isinstance(source, dict):
        return {"id": fallback_id, "revision": "unknown"}
    identity = source.get("id") or source.get("huggingface") or source.get("uri") or fallback_id
    return {"id": str(identity), "revision": str(source.get("revision", "unknown"))}


def variant_metadata(
    *,
    parameters: int,
    weights_bytes: int,
    model_config: dict[str, Any],
    recipe: dict[str, Any],
    evaluation: dict[str, Any],
    lineage: list[dict[str, Any]],
    source: dict[str, str],
    metrics: dict[str, float],
    wall_seconds: float,
) -> dict[str, Any]:
    """The manifest's metadata, through the model every reader uses."""
    return VariantMetadata(
        kind="variant",
        parameters=parameters,
        weights_bytes=weights_bytes,
        bits_per_weight=bits_per_weight(weights_bytes, parameters),
        model_config_=model_config,
        recipe=recipe,
        evaluation=evaluation,
        lineage=lineage,
        source=source,
        tools=tool_versions(),
        metrics=Metrics.model_validate(metrics),
        wall_seconds=round(wall_seconds, 3),
        peak_rss_bytes=peak_rss_bytes(),
    ).to_json()
