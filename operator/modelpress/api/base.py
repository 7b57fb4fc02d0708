"""Shared base for every API model: camelCase on the wire, snake_case in Python.

Attribute docstrings become field descriptions, so the CRD (and therefore
`kubectl explain`) is documented by the same text that documents the code.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from modelpress.problems import described


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


SECRET_NAME = described(
    r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
    "a Secret name: lowercase letters, digits, '-' and '.' (e.g. artifact-store)",
)
SECRET_KEY = described(
    r"^[-._a-zA-Z0-9]+$", "a Secret key: letters, digits, '-', '_' and '.' (e.g. token)"
)
HUB_REPO = described(
    r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$",
    "a Hugging Face repository: organization/name (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)",
)
NO_SPACES = described(r"^[^\s]+$", "a single word without spaces (a branch, tag or commit)")
MEMORY_QUANTITY = described(
    r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
    "a memory quantity: a number with an optional unit Ki, Mi, Gi, Ti, k, M, G or T (e.g. 24Gi)",
)
REASON = described(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", "a CamelCase word (e.g. JobFailed)")


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry (a CEL rule the API server enforces)."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


DNS_LABEL = described(
    r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
    "a DNS label: lowercase letters, digits and '-', starting with a letter and ending with "
    "a letter or digit (e.g. w4-small)",
)

# Child objects are named `<model>-<variant>-<key8>`; Kubernetes labels cap at 63.
MAX_MODEL_NAME = 32
MAX_VARIANT_NAME = 20
#: Steps in one variant's chain.
MAX_CHAIN_STEPS = 8

DNS_1123_LABEL = described(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    "a DNS label: lowercase letters, digits and '-', starting and ending with a letter or "
    "digit (e.g. w4-small or 4bit)",
)

# A variant's name only ever follows the model's in child names, so it may start with a
# digit; the model's own name also names a Service and must start with a letter.
VariantName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_VARIANT_NAME, pattern=DNS_1123_LABEL),
]
