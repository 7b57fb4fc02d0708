"""Both judges (the CRD as the API server applies it, and the operator's models)
accept the examples and reject each invalid manifest, naming the offending field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from modelpress.api.admission import check, model_problems, schema_problems
from modelpress.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

VALID = {
    "apiVersion": "modelpress.dev/v1alpha1",
    "kind": "CompressedModel",
    "metadata": {"name": "tiny"},
    "spec": {
        "source": {"huggingface": {"repo": "org/model"}},
        "storage": {"uri": "s3://artifacts/", "secretRef": {"name": "store"}},
        "calibration": {"dataset": {"uri": "s3://data/calib.txt"}},
        "variants": [
            {"name": "w4", "quantize": {"scheme": "W4A16", "groupSize": 64}},
            {
                "name": "slim",
                "steps": [
                    {"prune": {"method": "layer-drop", "fraction": 0.25}},
                    {"distill": {"steps": 10}},
                    {"quantize": {"scheme": "W4A16"}},
                ],
            },
        ],
        "evaluation": {"dataset": {"uri": "s3://data/eval.txt"}},
        "serving": {"variant": "auto", "gpu": {"product": "nvidia-l4"}},
    },
}


def mutate(path: str, value: object) -> dict:
    """VALID with the value at a dotted path (list indexes as numbers) replaced;
    `...` as value deletes the key."""
    manifest = copy.deepcopy(VALID)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = manifest
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return manifest


INVALID = [
    # (id, manifest, a field path every judge must name)
    ("wrong type for replicas", mutate("spec.serving.replicas", "two"), "spec.serving.replicas"),
    ("negative replicas", mutate("spec.serving.replicas", -1), "spec.serving.replicas"),
    ("maxModelLen of 0", mutate("spec.serving.maxModelLen", 0), "spec.serving.maxModelLen"),
    (
        "two actions in one step",
        mutate("spec.variants.1.steps.0.quantize", {"scheme": "W8A16"}),
        "spec.variants[1].steps[0]",
    ),
    (
        "two actions in one variant",
        mutate("spec.variants.0.prune", {"method": "layer-drop", "fraction": 0.5}),
        "spec.variants[0]",
    ),
    ("no action in a variant", mutate("spec.variants.0.quantize", ...), "spec.variants[0]"),
    (
        "duplicate variant names",
        mutate("spec.variants.1.name", "w4"),
        "spec.variants",
    ),
    (
        "unknown scheme",
        mutate("spec.variants.0.quantize.scheme", "W3A16"),
        "spec.variants[0].quantize.scheme",
    ),
    (
        "unknown algorithm",
        mutate("spec.variants.0.quantize.algorithm", "magic"),
        "spec.variants[0].quantize.algorithm",
    ),
    (
        "2:4 sparsity as a serving variant",
        mutate("spec.variants.1.steps.0.prune.method", "2:4"),
        "spec.variants[1].steps[0].prune",
    ),
    (
        "prune fraction of 1",
        mutate("spec.variants.1.steps.0.prune.fraction", 1.0),
        "spec.variants[1].steps[0].prune.fraction",
    ),
    (
        "hub token inline",
        mutate("spec.source.huggingface.token", "hf_abcdefghijklmnop"),
        "spec.source.huggingface.token",
    ),
    (
        "credentials in the storage URI",
        mutate("spec.storage.uri", "s3://AKIA123:secret@artifacts/"),
        "spec.storage.uri",
    ),
    ("URI with ..", mutate("spec.storage.uri", "s3://artifacts/a/../b/"), "spec.storage.uri"),
    (
        "unknown URI scheme",
        mutate("spec.evaluation.dataset.uri", "ftp://host/eval.txt"),
        "spec.evaluation.dataset.uri",
    ),
    (
        "name too long for child objects",
        mutate("metadata.name", "a-model-name-that-is-much-too-long-for-jobs"),
        "metadata.name",
    ),
    (
        "variant name too long",
        mutate("spec.variants.0.name", "w4-with-a-very-long-name"),
        "spec.variants[0].name",
    ),
    (
        "variant name not a DNS label",
        mutate("spec.variants.0.name", "W4_big"),
        "spec.variants[0].name",
    ),
    (
        "serving a variant that does not exist",
        mutate("spec.serving.variant", "w2"),
        "spec.serving",
    ),
    ("no source", mutate("spec.source", {}), "spec.source"),
    (
        "two sources",
        mutate("spec.source.uri", "s3://models/base/"),
        "spec.source",
    ),
    ("no variants", mutate("spec.variants", []), "spec.variants"),
    (
        "quantize before prune in a chain",
        mutate(
            "spec.variants.1.steps",
            [
                {"quantize": {"scheme": "W4A16"}},
                {"prune": {"method": "layer-drop", "fraction": 0.5}},
            ],
        ),
        "spec.variants[1]",
    ),
    (
        "one window that would be half dataset, half generated text",
        mutate(
            "spec.calibration",
            {"dataset": {"uri": "s3://data/calib.txt"}, "generated": {}, "samples": 1},
        ),
        "spec.calibration",
    ),
    (
        "evaluating on the calibration text",
        mutate("spec.evaluation.dataset.uri", "s3://data/calib.txt"),
        "spec.evaluation",
    ),
    ("gpu count not a power of two", mutate("spec.serving.gpu.count", 3), "spec.serving.gpu.count"),
    ("unknown field", mutate("spec.serving.maxModelLength", 4096), "spec.serving.maxModelLength"),
    (
        "autoscaling minimum above its maximum",
        mutate("spec.serving.autoscaling", {"minReplicas": 3, "maxReplicas": 2}),
        "spec.serving.autoscaling",
    ),
    (
        "scale to zero with nothing to wake it",
        mutate("spec.serving.autoscaling", {"minReplicas": 0, "maxReplicas": 2}),
        "spec.serving.autoscaling",
    ),
    (
        "awq without a GPU to run it",
        mutate("spec.variants.0.quantize", {"scheme": "W4A16", "algorithm": "awq"}),
        "spec",
    ),
    (
        "a distill batch that does not split over the training processes",
        mutate("spec.compression", {"nodes": 3}),
        "spec",
    ),
    (
        "KV-cache target in percent",
        mutate(
            "spec.serving.autoscaling",
            {"maxReplicas": 2, "metric": "kvCacheUsage", "target": 80},
        ),
        "spec.serving.autoscaling",
    ),
]


@pytest.mark.parametrize(("case", "manifest", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_models_reject_with_the_field(case, manifest, field):
    problems = model_problems(manifest)
    assert problems, f"the models accepted: {case}"
    assert any(p.path.startswith(field) for p in problems), [str(p) for p in problems]


@pytest.mark.parametrize(("case", "manifest", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_crd_schema_rejects_with_the_field(case, manifest, field):
    problems = schema_problems(manifest)
    assert problems, f"the CRD schema accepted: {case}"
    assert any(p.path.startswith(field) for p in problems), [str(p) for p in problems]


def test_valid_manifest_passes_both_judges():
    assert model_problems(VALID) == []
    assert schema_problems(VALID) == []


def test_only_a_distill_step_before_quantize_splits_its_batch_in_both_judges():
    """A quantized student tunes on one process, so its batch need not split over
    nodes x gpu.count; the healing before quantize still must."""
    tuned = {
        "name": "tuned",
        "steps": [{"quantize": {"scheme": "W4A16"}}, {"distill": {"steps": 10, "batchSize": 3}}],
    }
    manifest = mutate("spec.compression", {"nodes": 2})
    manifest["spec"]["variants"].append(tuned)
    assert model_problems(manifest) == []
    assert schema_problems(manifest) == []
    manifest["spec"]["variants"][1]["steps"][1]["distill"]["batchSize"] = 3
    assert [p.path for p in model_problems(manifest)] == ["spec"]
    assert [p.path for p in schema_problems(manifest)] == ["spec.compression"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_pass_both_judges(path):
    for document in yaml.safe_load_all(path.read_text()):
        if document and document.get("kind") == "CompressedModel":
            assert model_problems(document) == []
            assert schema_problems(document) == []


def test_at_least_fifteen_invalid_cases():
    assert len(INVALID) >= 15


def test_validate_command(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(VALID))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate("spec.serving.replicas", -1)))
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "spec.serving.replicas" in out and "valid" in out


def test_validate_reports_unreadable_yaml(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed")
    assert main(["validate", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_inline_secret_message_says_what_to_do():
    problems = model_problems(mutate("spec.source.huggingface.token", "hf_x"))
    assert any("Secret" in p.message for p in problems)
    assert all("hf_x" not in str(p) for p in problems)


def test_uri_credentials_never_reach_the_message():
    secret = "wJalrXUtn/FEMI/K7MDENG"
    problems = model_problems(mutate("spec.storage.uri", f"s3://AKIAEXAMPLE:{secret}@artifacts/x/"))
    assert problems and all(secret not in str(p) and "AKIAEXAMPLE" not in str(p) for p in problems)


def test_validate_reads_directories_lists_and_stdin_and_keeps_going(tmp_path, capsys, monkeypatch):
    import io

    folder = tmp_path / "manifests"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.yaml").write_text(yaml.safe_dump(VALID))
    (folder / "nested" / "list.yml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [VALID, VALID]})
    )
    (folder / "broken.yaml").write_text("spec: [unclosed")
    (folder / "notes.txt").write_text("not a manifest")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate("spec.serving.replicas", -1)))

    # an unreadable file does not stop the others; it decides the exit code (2)
    assert main(["validate", str(folder), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out.count(": valid") == 3  # a.yaml and both List items
    assert "spec.serving.replicas" in captured.out
    assert "broken.yaml is not valid YAML" in captured.err
    assert "notes.txt" not in captured.out + captured.err

    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(VALID)))
    assert main(["validate", "-"]) == 0
    assert "<stdin>: CompressedModel/tiny: valid" in capsys.readouterr().out


def test_validate_judges_the_object_the_api_server_stores():
    """A manifest whose only problem appears once defaults are applied, and one that is
    fine only after nulls are pruned: both judged as the API server would."""
    fp8 = mutate("spec.variants.0.quantize", {"scheme": "FP8_DYNAMIC"})
    assert check(fp8) == []
    helm = mutate("spec.serving", None)
    assert check(helm) == []
