"""Shared base for every API model: camelCase on the wire, snake_case in Python.

Attribute docstrings become field descriptions, so the CRD (and therefore
`kubectl explain`) is documented by the same text that documents the code.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it appears in YAML: camelCase keys, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry (a CEL rule the API server enforces)."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# Child objects are named `<model>-<variant>-<key8>`; Kubernetes labels cap at 63.
MAX_MODEL_NAME = 32
MAX_VARIANT_NAME = 20

VariantName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_VARIANT_NAME, pattern=DNS_LABEL),
]
