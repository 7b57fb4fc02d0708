"""What `modelpress validate` says about manifests people really write: Helm output,
`kubectl get -o yaml` round trips, typos and hostile files. Each case states the
message the user must see (or that the manifest is valid), read the way kubectl
reads it and judged on the object the API server would store."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from modelpress.api.admission import check
from modelpress.api.documents import DocumentError, parse_documents

BASE = """
apiVersion: modelpress.dev/v1alpha1
kind: CompressedModel
metadata:
  name: tiny
  namespace: ml
spec:
  source: {huggingface: {repo: org/model}}
  storage: {uri: "s3://artifacts/", secretRef: {name: store}}
  calibration: {dataset: {uri: "s3://data/calib.txt"}}
  variants:
    - name: w4
      quantize: {scheme: W4A16, groupSize: 64}
  evaluation: {dataset: {uri: "s3://data/eval.txt"}}
"""
VALID = yaml.safe_load(BASE)


def edit(change: Callable[[dict[str, Any]], Any]) -> str:
    manifest = copy.deepcopy(VALID)
    change(manifest)
    return yaml.safe_dump(manifest)


def spec(**fields: Any) -> str:
    return edit(lambda m: m["spec"].update(fields))


def variant(body: dict[str, Any]) -> str:
    return edit(lambda m: m["spec"].__setitem__("variants", [{"name": "v", **body}]))


def meta(**fields: Any) -> str:
    return edit(lambda m: m["metadata"].update(fields))


def text(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


OK = "valid"
CASES: list[tuple[str, str, str, str]] = [
    # --- defaults: what the API server stores must be what the operator accepts ---------
    ("fp8 unset algorithm", variant({"quantize": {"scheme": "FP8_DYNAMIC"}}), OK, ""),
    ("fp8 rtn", variant({"quantize": {"scheme": "FP8_DYNAMIC", "algorithm": "rtn"}}), OK, ""),
    (
        "fp8 gptq",
        variant({"quantize": {"scheme": "FP8_DYNAMIC", "algorithm": "gptq"}}),
        "spec.variants[0].quantize",
        "set algorithm rtn or leave it unset",
    ),
    (
        "fp8 awq",
        variant({"quantize": {"scheme": "FP8_DYNAMIC", "algorithm": "awq"}}),
        "spec.variants[0].quantize",
        "awq applies to scheme W4A16 only",
    ),
    (
        "fp8 at the end of a chain",
        variant(
            {
                "steps": [
                    {"prune": {"method": "layer-drop", "fraction": 0.25}},
                    {"quantize": {"scheme": "FP8_DYNAMIC"}},
                ]
            }
        ),
        OK,
        "",
    ),
    (
        "distill after quantize tunes its scales",
        variant(
            {
                "steps": [
                    {"prune": {"method": "ffn-width", "fraction": 0.25}},
                    {"quantize": {"scheme": "W4A16", "groupSize": 64}},
                    {"distill": {"steps": 10}},
                    {"distill": {"steps": 10, "learningRate": 0.0005}},
                ]
            }
        ),
        OK,
        "",
    ),
    (
        "round trip of kubectl get -o yaml (defaults and status present)",
        text(
            "  evaluation:",
            "  deletionPolicy: Retain\n  compression: {backoffLimit: 2}\n  evaluation:",
        )
        + "status: {observedGeneration: 1, conditions: []}\n",
        OK,
        "",
    ),
    # --- crashes that must be messages --------------------------------------------------
    ("metadata a list", edit(lambda m: m.__setitem__("metadata", [])), "metadata", ""),
    (
        "spec a string",
        edit(lambda m: m.__setitem__("spec", "compress it")),
        "spec",
        "must be an object",
    ),
    ("variants a string", spec(variants="w4"), "spec.variants", "must be a list, not 'w4'"),
    (
        "a null variant",
        spec(variants=[None]),
        "spec.variants[0]",
        "an object (a mapping of fields), not empty",
    ),
    ("a number as variant", spec(variants=[7]), "spec.variants[0]", "not the number 7"),
    ("uri a number", spec(storage={"uri": 5}), "spec.storage.uri", "must be a string"),
    (
        "evaluation missing",
        edit(lambda m: m["spec"].pop("evaluation")),
        "spec.evaluation",
        "is required: add it",
    ),
    ("a numeric key", edit(lambda m: m["spec"].__setitem__(1, "x")), "spec.1", "unknown field"),
    # --- rules the API server now enforces, where they used to fail inside a Job -----------
    (
        "distill first without studentLayers",
        variant({"distill": {"steps": 10}}),
        "spec.variants[0]",
        "needs studentLayers",
    ),
    (
        "studentLayers after a prune",
        variant(
            {
                "steps": [
                    {"prune": {"method": "layer-drop", "fraction": 0.25}},
                    {"distill": {"studentLayers": 4}},
                ]
            }
        ),
        "spec.variants[0]",
        "studentLayers applies only when distill is the first step",
    ),
    (
        "a step calibrated on the evaluation text",
        variant(
            {
                "prune": {
                    "method": "layer-drop",
                    "fraction": 0.25,
                    "calibration": {"dataset": {"uri": "s3://data/eval.txt"}},
                }
            }
        ),
        "spec.evaluation",
        "must differ from every calibration dataset",
    ),
    (
        "a training precision the compressor does not train in",
        variant({"distill": {"steps": 10, "precision": "fp16"}}),
        "spec.variants[0].distill.precision",
        "Input should be 'fp32' or 'bf16'",
    ),
    (
        "mixed precision on an activation-quantizing scheme",
        variant({"quantize": {"scheme": "W8A8", "mixedPrecision": {"budget": 0.6}}}),
        "spec.variants[0].quantize",
        "mixedPrecision applies to the weight-only schemes W4A16 and W8A16",
    ),
    (
        "mixed precision keeping sensitive blocks at the step's own scheme",
        variant(
            {
                "quantize": {
                    "scheme": "W8A16",
                    "mixedPrecision": {"budget": 0.6, "sensitiveScheme": "W8A16"},
                }
            }
        ),
        "spec.variants[0].quantize",
        "more precise",
    ),
    (
        "mixed precision budget as a percentage",
        variant({"quantize": {"scheme": "W4A16", "mixedPrecision": {"budget": 50}}}),
        "spec.variants[0].quantize.mixedPrecision.budget",
        "less than 1",
    ),
    (
        "round-to-nearest mixed precision without text measures on generated text",
        edit(
            lambda m: (
                m["spec"].pop("calibration"),
                m["spec"].__setitem__(
                    "variants",
                    [
                        {
                            "name": "v",
                            "quantize": {
                                "scheme": "W4A16",
                                "algorithm": "rtn",
                                "mixedPrecision": {"budget": 0.5},
                            },
                        }
                    ],
                ),
            )
        ),
        OK,
        "",
    ),
    (
        "an accuracy gate with no task to measure it on",
        spec(evaluation={"dataset": {"uri": "s3://data/eval.txt"}, "minAccuracyRecovery": 0.95}),
        "spec.evaluation",
        "minAccuracyRecovery needs evaluation.tasks",
    ),
    (
        "two tasks of one name",
        spec(
            evaluation={
                "dataset": {"uri": "s3://data/eval.txt"},
                "tasks": [
                    {"name": "qa", "dataset": {"uri": "s3://data/qa.jsonl"}},
                    {"name": "qa", "dataset": {"uri": "s3://data/qa2.jsonl"}},
                ],
            }
        ),
        "spec.evaluation",
        "names must be unique",
    ),
    (
        "a task the model calibrates on",
        spec(
            evaluation={
                "dataset": {"uri": "s3://data/eval.txt"},
                "tasks": [{"name": "qa", "dataset": {"uri": "s3://data/calib.txt"}}],
            }
        ),
        "spec.evaluation",
        "must not be a calibration dataset",
    ),
    (
        "a chat gate with no prompts to judge answers on",
        spec(evaluation={"dataset": {"uri": "s3://data/eval.txt"}, "maxChatKlDivergence": 0.3}),
        "spec.evaluation",
        "maxChatKlDivergence needs evaluation.chat",
    ),
    (
        "chat prompts the model calibrates on",
        spec(
            evaluation={
                "dataset": {"uri": "s3://data/eval.txt"},
                "chat": {"prompts": {"uri": "s3://data/calib.txt"}},
            }
        ),
        "spec.evaluation",
        "evaluation.chat.prompts must not be a calibration dataset",
    ),
    (
        "a chat gate with its prompts",
        spec(
            evaluation={
                "dataset": {"uri": "s3://data/eval.txt"},
                "chat": {"prompts": {"uri": "s3://data/prompts.jsonl"}, "maxTokens": 48},
                "maxChatKlDivergence": 0.3,
            }
        ),
        OK,
        "",
    ),
    (
        "zero points with W8A16",
        variant({"quantize": {"scheme": "W8A16", "symmetric": False}}),
        "spec.variants[0].quantize.symmetric",
        "symmetric: false (zero points) applies to scheme W4A16 only",
    ),
    (
        "zero points with W4A16",
        variant({"quantize": {"scheme": "W4A16", "symmetric": False}}),
        OK,
        "",
    ),
    (
        "awq with W8A16",
        variant({"quantize": {"scheme": "W8A16", "algorithm": "awq"}}),
        "spec.variants[0].quantize",
        "awq applies to scheme W4A16 only",
    ),
    (
        "quantize before prune",
        variant(
            {
                "steps": [
                    {"quantize": {"scheme": "W8A16"}},
                    {"prune": {"method": "layer-drop", "fraction": 0.25}},
                ]
            }
        ),
        "spec.variants[0]",
        "only distill may follow it",
    ),
    (
        "distill after a quantize step that quantizes activations",
        variant(
            {
                "steps": [
                    {"quantize": {"scheme": "W8A8"}},
                    {"distill": {"steps": 10}},
                ]
            }
        ),
        "spec.variants[0]",
        "tunes weight scales only",
    ),
    (
        "distill after a quantize step with an fp8 KV cache",
        variant(
            {
                "steps": [
                    {"quantize": {"scheme": "W4A16", "kvCacheScheme": "fp8"}},
                    {"distill": {"steps": 10}},
                ]
            }
        ),
        "spec.variants[0]",
        "without kvCacheScheme",
    ),
    (
        "prune after quantize and distill",
        variant(
            {
                "steps": [
                    {"quantize": {"scheme": "W4A16"}},
                    {"distill": {"steps": 10}},
                    {"prune": {"method": "layer-drop", "fraction": 0.25}},
                ]
            }
        ),
        "spec.variants[0]",
        "only distill may follow it",
    ),
    (
        "2:4 sparsity",
        variant({"prune": {"method": "2:4", "fraction": 0.5}}),
        "spec.variants[0].prune",
        "vLLM no longer gains memory",
    ),
    (
        "served variant missing",
        spec(serving={"variant": "w8"}),
        "spec.serving",
        "names no variant",
    ),
    (
        "learning step without text learns from generated text",
        edit(lambda m: m["spec"].pop("calibration")),
        OK,
        "",
    ),
    (
        "calibration from a dataset and generated at once mixes them",
        edit(lambda m: m["spec"]["calibration"].__setitem__("generated", {"seed": 1})),
        OK,
        "",
    ),
    (
        "one window cannot be half dataset, half generated",
        edit(lambda m: m["spec"]["calibration"].update(generated={}, samples=1)),
        "spec.calibration",
        "set samples to at least 2",
    ),
    (
        "calibration from nowhere",
        edit(lambda m: m["spec"]["calibration"].pop("dataset")),
        "spec.calibration",
        "set calibration.dataset (your own text), calibration.generated",
    ),
    # --- legitimate input that must be accepted ---------------------------------------------
    (
        "exponent float as go-yaml reads it",
        text(
            "- name: w4\n      quantize: {scheme: W4A16, groupSize: 64}",
            "- name: kd\n      distill: {studentLayers: 2, learningRate: 5e-5}",
        ),
        OK,
        "",
    ),
    (
        "helm null for an optional object",
        text("  evaluation:", "  serving:\n  evaluation:"),
        OK,
        "",
    ),
    (
        "helm null inside an object",
        text(
            "secretRef: {name: store}}", "secretRef: {name: store}}\n  compression: {memory: null}"
        ),
        OK,
        "",
    ),
    (
        "a date-like annotation",
        text("  namespace: ml", "  namespace: ml\n  annotations: {released: 2026-01-01}"),
        OK,
        "",
    ),
    (
        "kind List",
        "apiVersion: v1\nkind: List\nitems:\n"
        + "\n".join(
            "  " + line if line else line
            for line in ("- " + BASE.strip().replace("\n", "\n  ")).split("\n")
        ),
        OK,
        "",
    ),
    (
        "variant name starting with a digit",
        variant({"quantize": {"scheme": "W8A16"}}).replace("name: v", "name: 4bit"),
        OK,
        "",
    ),
    (
        "an @ in an object key",
        spec(evaluation={"dataset": {"uri": "s3://data/user@example.txt"}}),
        OK,
        "",
    ),
    (
        "the evaluation text spelt with //",
        spec(evaluation={"dataset": {"uri": "s3://data//calib.txt"}}),
        "spec.evaluation.dataset.uri",
        "names an object two ways",
    ),
    (
        "a URI with a query string",
        spec(storage={"uri": "s3://artifacts/?versionId=3"}),
        "spec.storage.uri",
        "query string",
    ),
    ("a file store", spec(storage={"uri": "file:///var/lib/modelpress/"}), OK, ""),
    # --- every message in words, never a regular expression ---------------------------------
    (
        "model name with capitals",
        meta(name="My_Model"),
        "metadata.name",
        "lowercase letters, digits and '-'",
    ),
    ("model name too long", meta(name="m" * 40), "metadata.name", "at most 32 characters"),
    (
        "variant name with capitals",
        variant({"quantize": {"scheme": "W8A16"}}).replace("name: v", "name: W4"),
        "spec.variants[0].name",
        "a DNS label",
    ),
    (
        "bucket too short",
        spec(storage={"uri": "s3://ab/"}),
        "spec.storage.uri",
        "bucket: 3-63 lowercase letters",
    ),
    (
        "credentials in a URI",
        spec(storage={"uri": "s3://AKIA:se/cret@artifacts/"}),
        "spec.storage.uri",
        "credentials must not be embedded",
    ),
    (
        "unknown scheme",
        spec(storage={"uri": "gs://artifacts/"}),
        "spec.storage.uri",
        "unknown scheme 'gs'",
    ),
    (
        "relative file URI",
        spec(storage={"uri": "file://relative/path"}),
        "spec.storage.uri",
        "file:///absolute/path/",
    ),
    (
        "secret name",
        spec(storage={"uri": "s3://artifacts/", "secretRef": {"name": "Bad_Name"}}),
        "spec.storage.secretRef.name",
        "a Secret name",
    ),
    (
        "hub repo without org",
        spec(source={"huggingface": {"repo": "model"}}),
        "spec.source.huggingface.repo",
        "organization/name",
    ),
    (
        "revision with a space",
        spec(source={"huggingface": {"repo": "org/m", "revision": "v 1"}}),
        "spec.source.huggingface.revision",
        "without spaces",
    ),
    (
        "memory in words",
        spec(compression={"memory": "lots"}),
        "spec.compression.memory",
        "a memory quantity",
    ),
    (
        "gpu product with a space",
        spec(serving={"gpu": {"product": "Nvidia L4"}}),
        "spec.serving.gpu.product",
        "a DNS label",
    ),
    (
        "misspelt field",
        spec(servng={"variant": "w4"}),
        "spec.servng",
        "remove it or check its spelling",
    ),
    (
        "inline token",
        spec(source={"huggingface": {"repo": "org/m", "token": "hf_x"}}),
        "spec.source.huggingface.token",
        "secrets must not be written inline",
    ),
    (
        "label value too long",
        meta(labels={"team": "x" * 70}),
        "metadata.labels.team",
        "not a label value",
    ),
    (
        "annotation a number",
        meta(annotations={"replicas": 3}),
        "metadata.annotations",
        "quote numbers",
    ),
    ("namespace with capitals", meta(namespace="ML"), "metadata.namespace", "not a namespace name"),
    (
        "unknown scheme name",
        variant({"quantize": {"scheme": "W3A16"}}),
        "spec.variants[0].quantize.scheme",
        "W4A16",
    ),
    # --- autoscaling: defaults the API server fills in, and rules it enforces -----------
    (
        "autoscaling with only maxReplicas",
        spec(serving={"autoscaling": {"maxReplicas": 3}}),
        OK,
        "",
    ),
    (
        "autoscaling min above max",
        spec(serving={"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}),
        "spec.serving.autoscaling",
        "must not exceed maxReplicas",
    ),
    (
        "scale to zero without a wake query",
        spec(serving={"autoscaling": {"minReplicas": 0, "maxReplicas": 2}}),
        "spec.serving.autoscaling",
        "needs wakeQuery",
    ),
    (
        "kv cache target in percent",
        spec(serving={"autoscaling": {"maxReplicas": 2, "metric": "kvCacheUsage", "target": 80}}),
        "spec.serving.autoscaling",
        "fraction",
    ),
    (
        "scale to zero with a wake query",
        spec(
            serving={"autoscaling": {"minReplicas": 0, "maxReplicas": 2, "wakeQuery": "vector(1)"}}
        ),
        OK,
        "",
    ),
]


@pytest.mark.parametrize(("case", "manifest", "path", "words"), CASES, ids=[c[0] for c in CASES])
def test_each_manifest_gets_the_message_it_deserves(
    case: str, manifest: str, path: str, words: str
) -> None:
    documents = parse_documents(manifest, case)
    models = [d.body for d in documents if d.body.get("kind") == "CompressedModel"]
    assert models, "the manifest holds a CompressedModel"
    problems = [p for body in models for p in check(body)]
    if path == OK:
        assert problems == []
        return
    assert any(p.path == path and words in p.message for p in problems), problems
    for problem in problems:
        assert not re.search(r"\^\[|\]\*|\$'|\\s", problem.message), f"a regex in: {problem}"
    paths = [(p.path, p.message) for p in problems]
    assert len(paths) == len(set(paths)), "one message per problem"


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "a: &a [1,2]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
            "f: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
            "expands to more than",
        ),
        ("x: " + "[" * 100 + "]" * 100 + "\n", "nested deeper than"),
        ("a: b: c\n", "not valid YAML"),
        ("- just\n- a list\n", "a manifest must be a mapping"),
        ("x" * (3 * 1024 * 1024 + 1), "3 MiB"),
    ],
    ids=["billion laughs", "deep nesting", "broken YAML", "a list", "too large"],
)
def test_hostile_or_broken_input_is_refused_quickly_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(DocumentError, match=words):
        parse_documents(text, "input.yaml")
