"""The whole `CompressedModel` object, and the identity of its API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelpress.api.base import DNS_LABEL, MAX_MODEL_NAME
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import CompressedModelStatus
from modelpress.problems import problems

GROUP = "modelpress.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CompressedModel"
PLURAL = "compressedmodels"
SINGULAR = "compressedmodel"
SHORT_NAMES = ["cm", "cmodel"]
CATEGORIES = ["modelpress", "all"]


class ObjectMeta(BaseModel):
    """The metadata fields modelpress reads; everything else is left as Kubernetes has it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1, max_length=MAX_MODEL_NAME, pattern=DNS_LABEL)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None


class CompressedModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["modelpress.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["CompressedModel"]
    metadata: ObjectMeta
    spec: CompressedModelSpec
    status: CompressedModelStatus | None = None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> CompressedModel:
        return cls.model_validate(manifest)


def read_spec(raw_spec: Mapping[str, Any] | None) -> tuple[CompressedModelSpec | None, list[str]]:
    """The spec as the operator reads it, or the problems that stop it, one per field."""
    try:
        return CompressedModelSpec.model_validate(dict(raw_spec or {})), []
    except ValidationError as error:
        return None, [str(p) for p in problems(error, ("spec",))]


def read_status(raw_status: Mapping[str, Any] | None) -> CompressedModelStatus:
    """A stored status as the planner reads it: an empty one when it is not a status this
    version can read (written by hand, or by a version with another schema), so a broken
    status is overwritten with the truth rather than stopping the operator."""
    try:
        return CompressedModelStatus.model_validate(dict(raw_status or {}))
    except (ValidationError, TypeError, ValueError):
        return CompressedModelStatus()
