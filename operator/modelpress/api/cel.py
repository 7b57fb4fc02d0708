"""The spec's cross-field rules as CEL, which the API server evaluates.

Each mirrors a pydantic validator in `api.spec` and `api.steps`; tests check that both
reject the same manifests. `api.crd` puts them into the generated schema: RULES by the
pydantic model they attach to, ROOT_RULES on the whole object.
"""

from __future__ import annotations

from modelpress.api.base import MAX_CHAIN_STEPS, MAX_MODEL_NAME
from modelpress.api.inputs import NO_SOURCE, TOO_FEW_TO_MIX
from modelpress.api.spec import NO_CHAT

_EXACTLY_ONE_ACTION = "[has(self.quantize), has(self.prune), has(self.distill)]"
_ACTIONS = ("quantize", "prune", "distill")
#: Every index a chain can have: CEL has no macros over indices.
_POSITIONS = str(list(range(MAX_CHAIN_STEPS)))


def _calibrated_on(x: str) -> str:
    """CEL: the action `x` learns from the evaluation text itself."""
    return " || ".join(
        f"(has({x}.{a}) && has({x}.{a}.calibration) && has({x}.{a}.calibration.dataset) && "
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


def _gang_splits(v: str) -> str:
    """CEL: every step of the chain `v.steps` before its quantize step splits its batch
    (a distill step after quantize trains on one process)."""
    quantized_before = f"{_POSITIONS}.exists(j, j < i && has({v}.steps[j].quantize))"
    return (
        f"{_POSITIONS}.all(i, i >= {v}.steps.size() || {quantized_before} || "
        f"{_splits(f'{v}.steps[i]')})"
    )


RULES: dict[str, list[dict[str, str]]] = {
    "Calibration": [
        {"rule": "has(self.dataset) || has(self.generated)", "message": NO_SOURCE},
        {
            "rule": "!has(self.dataset) || !has(self.generated) || !has(self.samples) "
            "|| self.samples >= 2",
            "message": TOO_FEW_TO_MIX,
        },
    ],
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
            "rule": "!has(self.steps) || (self.steps.filter(s, has(s.quantize)).size() <= 1 && "
            f"{_POSITIONS}.all(i, i >= self.steps.size() || has(self.steps[i].distill) || "
            f"{_POSITIONS}.all(j, j >= i || !has(self.steps[j].quantize))))",
            "message": "quantize may come once in a chain, and only distill may follow it",
        },
        {
            "rule": f"!has(self.steps) || {_POSITIONS}.all(i, i + 1 >= self.steps.size() || "
            "!has(self.steps[i].quantize) || !has(self.steps[i + 1].distill) || "
            "(self.steps[i].quantize.scheme in ['W4A16', 'W8A16'] && "
            "!has(self.steps[i].quantize.kvCacheScheme)))",
            "message": "distill after quantize tunes weight scales only: the quantize step "
            "must be W4A16 or W8A16 without kvCacheScheme",
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
            "rule": "!has(self.symmetric) || self.symmetric || self.scheme == 'W4A16'",
            "message": "symmetric: false (zero points) applies to scheme W4A16 only: remove "
            "symmetric or use W4A16",
            "fieldPath": ".symmetric",
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
        {
            "rule": "!has(self.maxChatKlDivergence) || has(self.chat)",
            "message": NO_CHAT,
            "fieldPath": ".maxChatKlDivergence",
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
            "rule": "(!has(self.calibration) || !has(self.calibration.dataset) || "
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
            "rule": f"self.variants.all(v, has(v.steps) ? {_gang_splits('v')} : {_splits('v')})",
            "message": "a distill batchSize before quantize must split over the processes of "
            "spec.compression (nodes x gpu.count): use a multiple of them",
            "fieldPath": ".compression",
        },
    ],
}

ROOT_RULES = [
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
