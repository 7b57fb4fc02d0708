"""Generate the CustomResourceDefinition from the pydantic models.

pydantic emits JSON Schema (draft 2020-12 with `$ref`s); the API server wants a
structural OpenAPI v3 schema: every node typed, no `$ref`, no `null` types,
booleans for `exclusiveMinimum`. This module does that translation and adds the
Kubernetes extensions (CEL rules, list types, printer columns).
"""

from __future__ import annotations

import copy
from typing import Any

from modelpress.api import resource
from modelpress.api.cel import ROOT_RULES, RULES
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import CompressedModelStatus

# Keys of JSON Schema that the structural OpenAPI subset keeps as they are.
_KEPT = {
    "type",
    "description",
    "default",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "items",
    "additionalProperties",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
}

PRINTER_COLUMNS = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.summary.phase"},
    {"name": "Served", "type": "string", "jsonPath": ".status.serving.variant"},
    {"name": "Variants", "type": "string", "jsonPath": ".status.summary.variants"},
    {
        "name": "Size",
        "type": "number",
        "jsonPath": ".status.summary.sizeRatio",
        "description": "Served variant's bytes relative to the base model",
    },
    {
        "name": "dPPL",
        "type": "number",
        "jsonPath": ".status.summary.perplexityIncrease",
        "description": "Served variant's perplexity increase over the base model",
    },
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.summary.gpus"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def structural_schema(model: type, extra_rules: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """A pydantic model as a structural OpenAPI v3 schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")  # type: ignore[attr-defined]
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions, extra_rules, name=raw.get("title", ""))


def _convert(
    node: dict[str, Any],
    defs: dict[str, Any],
    rules: dict[str, list[dict[str, str]]],
    name: str = "",
) -> dict[str, Any]:
    node = copy.deepcopy(node)
    if "$ref" in node:
        ref_name = node.pop("$ref").rsplit("/", 1)[-1]
        merged = {**defs[ref_name], **node}  # a field's own description wins
        return _convert(merged, defs, rules, name=ref_name)
    for combinator in ("anyOf", "oneOf"):
        if combinator in node:
            options = [o for o in node.pop(combinator) if o.get("type") != "null"]
            if len(options) != 1:
                raise ValueError(f"{name}: unions other than Optional[X] cannot be structural")
            inner = _convert(options[0], defs, rules)
            return _convert({**inner, **node}, defs, rules, name=name)
    if "default" in node and node["default"] is None:
        del node["default"]  # Optional fields are simply absent
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = _json_type(node["enum"][0])
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[limit] = node.pop(bound)
            node[bound] = True
    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEPT or k.startswith("exclusive")}
    if "properties" in out:
        out["type"] = "object"
        out["properties"] = {
            k: _convert(v, defs, rules, name=k) for k, v in out["properties"].items()
        }
        if not out.get("required"):
            out.pop("required", None)
    if "items" in out:
        out["items"] = _convert(out["items"], defs, rules)
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _convert(out["additionalProperties"], defs, rules)
    elif "additionalProperties" in out:
        out.pop("additionalProperties")
    validations = list(out.get("x-kubernetes-validations", [])) + rules.get(name, [])
    if validations:
        out["x-kubernetes-validations"] = validations
    if out.get("type") is None and "properties" not in out:
        raise ValueError(f"{name}: schema node without a type cannot be structural")
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def spec_schema() -> dict[str, Any]:
    schema = structural_schema(CompressedModelSpec, RULES)
    variants = schema["properties"]["variants"]
    variants["x-kubernetes-list-type"] = "map"
    variants["x-kubernetes-list-map-keys"] = ["name"]
    tasks = schema["properties"]["evaluation"]["properties"]["tasks"]
    tasks["x-kubernetes-list-type"] = "map"
    tasks["x-kubernetes-list-map-keys"] = ["name"]
    return schema


def status_schema() -> dict[str, Any]:
    schema = structural_schema(CompressedModelStatus, {})
    for list_field in ("conditions",):
        schema["properties"][list_field]["x-kubernetes-list-type"] = "map"
        schema["properties"][list_field]["x-kubernetes-list-map-keys"] = ["type"]
    schema["properties"]["variants"]["x-kubernetes-list-type"] = "map"
    schema["properties"]["variants"]["x-kubernetes-list-map-keys"] = ["name"]
    return schema


def openapi_schema() -> dict[str, Any]:
    """The schema of the whole object, as it goes into the CRD's version."""
    return {
        "type": "object",
        "description": "A base language model, the compressed variants to build from it, "
        "and how to serve the best one with vLLM.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "modelpress.dev/v1alpha1"},
            "kind": {"type": "string", "description": "CompressedModel"},
            "metadata": {"type": "object", "description": "Standard object metadata."},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "x-kubernetes-validations": ROOT_RULES,
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition, as committed in crds/ and shipped by the chart."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.PLURAL}.{resource.GROUP}"},
        "spec": {
            "group": resource.GROUP,
            "names": {
                "kind": resource.KIND,
                "listKind": f"{resource.KIND}List",
                "plural": resource.PLURAL,
                "singular": resource.SINGULAR,
                "shortNames": resource.SHORT_NAMES,
                "categories": resource.CATEGORIES,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": resource.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    import yaml

    header = "# Generated by `modelpress crd` from operator/modelpress/api. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)
