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
from modelpress.api.base import MAX_MODEL_NAME
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

# Cross-field rules of the spec, as CEL the API server evaluates. Each mirrors a
# pydantic validator in api.spec; tests check that both reject the same manifests.
_EXACTLY_ONE_ACTION = "[has(self.quantize), has(self.prune), has(self.distill)]"


def _learns_without_data(x: str) -> str:
    """CEL: the action `x` (a step or a single-action variant) needs no text to learn from."""
    return (
        f"(has({x}.quantize) && ({x}.quantize.scheme == 'FP8_DYNAMIC' || "
        f"(has({x}.quantize.algorithm) && {x}.quantize.algorithm == 'rtn')) && "
        f"!has({x}.quantize.kvCacheScheme) && !has({x}.quantize.mixedPrecision))"
    )


def _brings_own_data(x: str) -> str:
    return " || ".join(f"(has({x}.{a}) && has({x}.{a}.calibration))" for a in _ACTIONS)


_ACTIONS = ("quantize", "prune", "distill")


def _calibrated_on(x: str) -> str:
    """CEL: the action `x` learns from the evaluation text itself."""
    return " || ".join(
        f"(has({x}.{a}) && has({x}.{a}.calibration) && "
        f"{x}.{a}.calibration.dataset.uri == self.evaluation.dataset.uri)"
        for a in _ACTIONS
    )


_PROCESSES = (
    "((has(self.compression) && has(self.compression.nodes) ? self.compression.nodes : 1) * "
    "(has(self.compression) && has(self.compression.gpu) && has(self.compression.gpu.count) "
    "? self.compression.gpu.count : 1))"
)


def _no_awq(x: str) -> str:
    """CEL: the quantize action of `x`, if any, is not awq."""
    return (
        f"(!has({x}.quantize) || !has({x}.quantize.algorithm) || {x}.quantize.algorithm != 'awq')"
    )


def _splits(x: str) -> str:
    """CEL: the distill action of `x`, if any, has a batch that splits over the processes."""
    batch = f"(has({x}.distill.batchSize) ? {x}.distill.batchSize : 4)"
    return f"(!has({x}.distill) || {batch} % {_PROCESSES} == 0)"


_STEP_OK = f"{_learns_without_data('s')} || {_brings_own_data('s')}"
_VARIANT_OK = f"{_learns_without_data('v')} || {_brings_own_data('v')}"

_RULES: dict[str, list[dict[str, str]]] = {
    "Source": [
        {
            "rule": "has(self.huggingface) != has(self.uri)",
            "message": "set exactly one of source.huggingface or source.uri",
        }
    ],
    "Step": [
        {
            "rule": f"{_EXACTLY_ONE_ACTION}.filter(x, x).size() == 1",
            "message": "a step needs exactly one of quantize, prune or distill",
        }
    ],
    "Variant": [
        {
            "rule": f"({_EXACTLY_ONE_ACTION} + [has(self.steps)]).filter(x, x).size() == 1",
            "message": "a variant needs exactly one of quantize, prune, distill or steps",
        },
        {
            "rule": "has(self.steps) ? (!has(self.steps[0].distill) || "
            "has(self.steps[0].distill.studentLayers)) : "
            "(!has(self.distill) || has(self.distill.studentLayers))",
            "message": "distill as the first step needs studentLayers (the number of teacher "
            "layers the student keeps), or a prune step before it",
        },
        {
            "rule": "!has(self.steps) || self.steps.size() < 2 || "
            "self.steps.filter(s, has(s.distill) && has(s.distill.studentLayers)).size() == 0 || "
            "(has(self.steps[0].distill) && has(self.steps[0].distill.studentLayers) && "
            "self.steps.filter(s, has(s.distill) && has(s.distill.studentLayers)).size() == 1)",
            "message": "studentLayers applies only when distill is the first step: remove it",
        },
        {
            "rule": "!has(self.steps) || self.steps.filter(s, has(s.quantize)).size() == 0 || "
            "(self.steps.filter(s, has(s.quantize)).size() == 1 && "
            "has(self.steps[self.steps.size() - 1].quantize))",
            "message": "quantize must be the last step of a chain, and only once",
        },
    ],
    "QuantizeStep": [
        {
            "rule": "!has(self.mixedPrecision) || self.scheme in ['W4A16', 'W8A16']",
            "message": "mixedPrecision applies to the weight-only schemes W4A16 and W8A16: "
            "change the scheme or remove mixedPrecision",
            "fieldPath": ".mixedPrecision",
        },
        {
            "rule": "!has(self.mixedPrecision) || !has(self.mixedPrecision.sensitiveScheme) || "
            "self.mixedPrecision.sensitiveScheme != self.scheme",
            "message": "mixedPrecision.sensitiveScheme must be more precise than the step's "
            "scheme (W8A16 after W4A16, or none)",
            "fieldPath": ".mixedPrecision.sensitiveScheme",
        },
        {
            "rule": "!has(self.algorithm) || self.algorithm != 'awq' || self.scheme == 'W4A16'",
            "message": "algorithm awq applies to scheme W4A16 only: use gptq or rtn",
        },
        {
            "rule": "self.scheme != 'FP8_DYNAMIC' || !has(self.algorithm) || "
            "self.algorithm == 'rtn'",
            "message": "scheme FP8_DYNAMIC needs no calibration: set algorithm rtn or leave "
            "it unset",
            "fieldPath": ".algorithm",
        },
    ],
    "Evaluation": [
        {
            "rule": "!has(self.minAccuracyRecovery) || (has(self.tasks) && self.tasks.size() > 0)",
            "message": "evaluation.minAccuracyRecovery needs evaluation.tasks to measure "
            "accuracy on: add a task or remove the limit",
            "fieldPath": ".minAccuracyRecovery",
        },
    ],
    "Autoscaling": [
        {
            "rule": "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
            "message": "minReplicas must not exceed maxReplicas",
            "fieldPath": ".minReplicas",
        },
        {
            "rule": "!has(self.minReplicas) || self.minReplicas > 0 || has(self.wakeQuery)",
            "message": "minReplicas 0 needs wakeQuery: with no replica running, vLLM reports "
            "nothing that could wake the model",
            "fieldPath": ".wakeQuery",
        },
        {
            "rule": "!has(self.target) || !has(self.metric) || self.metric != 'kvCacheUsage' "
            "|| double(self.target) <= 1.0",
            "message": "with metric kvCacheUsage, target is a fraction from 0 to 1 (e.g. 0.8)",
            "fieldPath": ".target",
        },
    ],
    "CompressedModelSpec": [
        {
            "rule": "!has(self.serving) || !has(self.serving.variant) || "
            "self.serving.variant in ['auto', 'none'] || "
            "self.variants.exists(v, v.name == self.serving.variant)",
            "message": "serving.variant must name a variant, or be auto or none",
            "fieldPath": ".serving.variant",
        },
        {
            "rule": "(!has(self.calibration) || "
            "self.calibration.dataset.uri != self.evaluation.dataset.uri) && "
            "self.variants.all(v, has(v.steps) ? "
            f"v.steps.all(s, !({_calibrated_on('s')})) : !({_calibrated_on('v')}))",
            "message": "evaluation.dataset must differ from every calibration dataset: quality "
            "measured on training text would look better than it is",
            "fieldPath": ".evaluation.dataset.uri",
        },
        {
            "rule": "(has(self.compression) && has(self.compression.gpu)) || "
            f"self.variants.all(v, has(v.steps) ? v.steps.all(s, {_no_awq('s')}) "
            f": {_no_awq('v')})",
            "message": "algorithm awq runs on a GPU only: set spec.compression.gpu, or use "
            "algorithm gptq",
            "fieldPath": ".compression",
        },
        {
            "rule": f"self.variants.all(v, has(v.steps) ? v.steps.all(s, {_splits('s')}) "
            f": {_splits('v')})",
            "message": "a distill batchSize must split over the processes of spec.compression "
            "(nodes x gpu.count): use a multiple of them",
            "fieldPath": ".compression",
        },
        {
            "rule": "has(self.calibration) || self.variants.all(v, has(v.steps) ? "
            f"v.steps.all(s, {_STEP_OK}) : ({_VARIANT_OK}))",
            "message": "gptq, awq, kvCacheScheme, mixedPrecision, prune and distill need text "
            "to learn from: "
            "set spec.calibration or the step's own calibration",
            "fieldPath": ".calibration",
        },
    ],
}

_ROOT_RULES = [
    {
        "rule": f"size(self.metadata.name) <= {MAX_MODEL_NAME}",
        "message": f"metadata.name must be at most {MAX_MODEL_NAME} characters: "
        "child Jobs and Deployments are named after it",
        "fieldPath": ".metadata.name",
    },
    {
        "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": "metadata.name must be a DNS label starting with a letter "
        "(it names the serving Service)",
        "fieldPath": ".metadata.name",
    },
]

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
    schema = structural_schema(CompressedModelSpec, _RULES)
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
        "x-kubernetes-validations": _ROOT_RULES,
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
