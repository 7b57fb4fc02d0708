"""The metadata a compressed variant's manifest carries: written by `compress`, read by
the planner, `modelpress size`, the compress command's report and local mode.

One model for both sides, so a key renamed on one side cannot go unread on the
other. Reading is lenient: a manifest from an older version, a base model's
manifest, or one with a malformed field gives the fields that are usable, and
unknown keys are kept as they are.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from modelpress.api.status import Metrics


class VariantMetadata(BaseModel):
    """`manifest.json`'s `metadata` for a variant artifact (camelCase on disk)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )

    kind: str | None = None
    """"variant" for a compressed variant."""
    parameters: int | None = None
    """Dense parameter count of the compressed model."""
    weights_bytes: int | None = None
    """Exact tensor bytes of the safetensors files (headers excluded)."""
    bits_per_weight: float | None = None
    model_config_: dict[str, Any] | None = Field(
        default=None,
        validation_alias=AliasChoices("modelConfig", "model_config_"),
        serialization_alias="modelConfig",
    )
    """The variant's config.json (as saved), for sizing without reading the file. (The
    name `model_config` is pydantic's own.)"""
    recipe: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    lineage: list[dict[str, Any]] | None = None
    source: dict[str, Any] | None = None
    tools: dict[str, str] | None = None
    metrics: Metrics | None = None
    wall_seconds: float | None = None
    peak_rss_bytes: int | None = None

    @field_validator("metrics", mode="before")
    @classmethod
    def _known_metrics(cls, value: Any) -> Any:
        """Metrics this version does not know are left out, not a reason to drop all."""
        if isinstance(value, dict):
            known = {f.alias or name for name, f in Metrics.model_fields.items()}
            return {k: v for k, v in value.items() if k in known}
        return value

    def to_json(self) -> dict[str, Any]:
        """The metadata as the manifest stores it: camelCase keys, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @classmethod
    def read(cls, data: Any) -> VariantMetadata:
        """The usable fields of a manifest's metadata; a malformed field reads as unset."""
        if not isinstance(data, dict):
            return cls()
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            broken = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
            return cls.model_validate({k: v for k, v in data.items() if k not in broken})
