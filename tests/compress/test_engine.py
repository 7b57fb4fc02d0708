"""compress_variant end to end on a tiny model: published artifact, metadata, lineage,
idempotence, and bad requests failing before any heavy work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelpress.compress.checkpoint as checkpoint_module
from modelpress.compress import CompressionError, compress_variant, validate_variant
from modelpress.compress.checkpoint import safetensors_header, weights_bytes
from modelpress.storage import fetch, read_manifest

EVAL_SETTINGS = {"samples": 4, "sequenceLength": 64}
CALIB_SETTINGS = {"samples": 8, "sequenceLength": 64}


@pytest.fixture
def request_parts(texts):
    evaluation = {"dataset": {"uri": f"file://{texts['evaluation']}"}, **EVAL_SETTINGS}
    calibration = {"dataset": {"uri": f"file://{texts['calibration']}"}, **CALIB_SETTINGS}
    return evaluation, calibration


def test_quantized_variant_is_published_with_complete_metadata(
    published_base, store, request_parts, tmp_path
):
    evaluation, calibration = request_parts
    variant = {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}
    out = store + "artifacts/w8/"
    result = compress_variant(
        published_base, variant, evaluation, out, calibration=calibration, work_dir=tmp_path
    )

    manifest = read_manifest(out)
    assert manifest is not None and result.metadata == manifest.metadata
    meta = manifest.metadata
    expected_keys = {
        "kind", "parameters", "weightsBytes", "bitsPerWeight", "modelConfig", "recipe", "evaluation",
        "lineage", "source", "tools", "metrics", "wallSeconds", "peakRssBytes",
    }  # fmt: skip
    assert expected_keys <= set(meta)
    assert meta["kind"] == "variant"
    assert meta["evaluation"] == {**evaluation, "metric": "perplexity"}  # no gate thresholds
    assert meta["source"] == {"id": "org/tiny", "revision": "c0ffee"}
    assert meta["recipe"] == variant | {"quantize": {**variant["quantize"], "ignore": ["lm_head"]}}
    assert meta["modelConfig"]["quantization_config"]["quant_method"] == "compressed-tensors"

    artifact = tmp_path / "pulled"  # as vLLM's init container gets it: verified, by path
    fetch(out, artifact)
    base = tmp_path / "base-pulled"
    fetch(published_base, base)
    assert meta["weightsBytes"] == weights_bytes(artifact)
    header = safetensors_header(artifact / "model.safetensors")
    assert meta["weightsBytes"] < (artifact / "model.safetensors").stat().st_size
    assert "model.layers.0.mlp.up_proj.weight_packed" in header
    assert meta["weightsBytes"] < weights_bytes(base)
    assert meta["bitsPerWeight"] == pytest.approx(
        meta["weightsBytes"] * 8 / meta["parameters"], abs=1e-3
    )

    metrics = meta["metrics"]
    assert metrics["perplexityIncrease"] == pytest.approx(
        metrics["perplexity"] / metrics["basePerplexity"] - 1, abs=1e-5
    )
    assert 0.5 < metrics["agreement"] <= 1
    assert 0 < metrics["klDivergence"] <= metrics["klDivergenceP99"]
    (step,) = meta["lineage"]
    assert (
        step["kind"] == "quantize"
        and step["parameters"] == meta["parameters"]
        and step["seconds"] >= 0
    )
    assert meta["peakRssBytes"] > 50 << 20

    again = compress_variant(published_base, variant, evaluation, out, calibration=calibration)
    assert again.already_published and again.metadata == meta


#: A short chain that trains, checkpointing at its second and last steps.
PRUNE_AND_HEAL = [
    {"prune": {"method": "layer-drop", "fraction": 0.25}},
    {"distill": {"steps": 3, "batchSize": 2, "checkpointEvery": 2}},
]


def test_chain_feeds_each_step_the_previous_result(tiny_model, store, request_parts, tmp_path):
    evaluation, calibration = request_parts
    variant = {
        "name": "slim",
        "steps": [
            *PRUNE_AND_HEAL,
            {"quantize": {"scheme": "W4A16", "algorithm": "gptq", "groupSize": 64}},
        ],
    }
    result = compress_variant(
        str(tiny_model), variant, evaluation, store + "artifacts/slim/",
        calibration=calibration, work_dir=tmp_path, cache_dir=tmp_path / "cache",
    )  # fmt: skip
    meta = result.metadata
    kinds = [step["kind"] for step in meta["lineage"]]
    assert kinds == ["prune", "distill", "quantize"]
    counts = [step["parameters"] for step in meta["lineage"]]
    assert counts[0] < 860_000 and counts[0] == counts[1] == counts[2] == meta["parameters"]
    assert len(meta["lineage"][0]["details"]["droppedLayers"]) == 1
    assert meta["lineage"][1]["params"]["calibration"]["samples"] == CALIB_SETTINGS["samples"]
    assert meta["modelConfig"]["num_hidden_layers"] == 3
    assert meta["source"]["id"] == str(tiny_model)
    assert list((tmp_path / "cache").glob("*/scores.pt"))
    # Training was checkpointed where a restarted Job would look for it.
    assert list((tmp_path / "checkpoints").glob("*/step-00000003"))


def test_an_upgrade_resumes_the_training_it_interrupted_unless_outputs_change(
    tiny_model, store, request_parts, tmp_path, monkeypatch
):
    """A Helm upgrade mid-distillation restarts the Job with a newer package. Its
    checkpoints still fit unless the release changes what a recipe produces
    (OUTPUT_VERSION, as for artifact keys); then training starts over."""
    import modelpress
    from modelpress.api import keys

    evaluation, calibration = request_parts
    variant = {"name": "slim", "steps": PRUNE_AND_HEAL}

    def resumed_from(out: str) -> int:
        result = compress_variant(
            str(tiny_model), variant, evaluation, store + out,
            calibration=calibration, work_dir=tmp_path, cache_dir=tmp_path / "cache",
        )  # fmt: skip
        return int(result.metadata["lineage"][1]["details"]["resumedFromStep"])

    assert resumed_from("artifacts/first/") == 0
    monkeypatch.setattr(modelpress, "__version__", "9.9.9")
    assert resumed_from("artifacts/upgraded/") == 3
    monkeypatch.setattr(keys, "OUTPUT_VERSION", "9.9.0")
    assert resumed_from("artifacts/new-outputs/") == 0


def test_the_base_model_is_evaluated_once_per_store_for_every_variant(
    published_base, store, request_parts, tmp_path, loaded_models
):
    """Each Job reads the base model's reference from the store instead of evaluating the
    base again; a Job in another pod finds it there too."""
    evaluation, calibration = request_parts
    references = store + "evaluations/"
    results = []
    for name, scheme in (("w8", "W8A16"), ("w4", "W4A16")):
        (tmp_path / name).mkdir()
        variant = {"name": name, "quantize": {"scheme": scheme, "algorithm": "rtn"}}
        out = f"{store}artifacts/{name}/"
        result = compress_variant(
            published_base, variant, evaluation, out,
            calibration=calibration, work_dir=tmp_path / name, cache_dir=references,
        )  # fmt: skip
        results.append(result)
    first, second = (r.metadata["metrics"] for r in results)
    assert first["basePerplexity"] == second["basePerplexity"]
    assert second["klDivergence"] > first["klDivergence"], "4 bits move the distribution more"
    stored = list((Path(store.removeprefix("file://")) / "evaluations").iterdir())
    assert len(stored) == 1 and (stored[0] / "manifest.json").is_file()
    # First Job: the chain's base, the base evaluated, the variant; second: no evaluation.
    assert loaded_models == ["base", "base", "variant", "base", "variant"]


@pytest.fixture
def no_weights(monkeypatch):
    """Fail loudly if anything tries to load model weights."""

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the request was checked")

    monkeypatch.setattr(checkpoint_module, "load_model", refuse)


@pytest.mark.parametrize(
    ("variant", "calibration_settings", "reason", "message"),
    [
        (
            {"quantize": {"scheme": "W4A16", "groupSize": 256}},
            {},
            "InvalidGroupSize",
            "use groupSize 128",
        ),
        (
            {"prune": {"method": "layer-drop", "fraction": 0.9}},
            {},
            "InvalidPrune",
            "leaves no layer",
        ),
        ({"distill": {"studentLayers": 4}}, {}, "InvalidDistill", "fewer than the teacher's 4"),
        (
            {"prune": {"method": "ffn-width", "fraction": 0.5}},
            {"samples": 5000},
            "DatasetTooSmall",
            "lower samples",
        ),
    ],
)
def test_bad_requests_fail_before_weights_are_loaded(
    published_base, store, request_parts, no_weights, variant, calibration_settings, reason, message
):
    evaluation, calibration = request_parts
    with pytest.raises(CompressionError, match=message) as caught:
        compress_variant(
            published_base, {"name": "bad", **variant}, evaluation, store + "artifacts/bad/",
            calibration=calibration | calibration_settings,
        )  # fmt: skip
    assert caught.value.reason == reason
    assert read_manifest(store + "artifacts/bad/") is None
    assert not (Path(store.removeprefix("file://")) / "artifacts" / "bad").exists()


def test_invalid_wire_json_and_missing_base_are_reported(store, request_parts, tmp_path):
    evaluation, calibration = request_parts
    with pytest.raises(CompressionError, match="invalid Variant"):
        validate_variant(str(tmp_path), {"name": "x", "quantize": {"scheme": "W3"}}, evaluation)
    with pytest.raises(CompressionError, match="no base model is published") as caught:
        validate_variant(
            store + "models/none/",
            {"name": "x", "prune": {"method": "layer-drop", "fraction": 0.5}},
            evaluation,
            calibration=calibration,
        )
    assert caught.value.reason == "BaseModelNotFound"


def test_validate_reads_only_the_small_files(published_base, request_parts, no_weights):
    evaluation, calibration = request_parts
    summary = validate_variant(
        published_base,
        {"name": "w4", "quantize": {"scheme": "W4A16", "groupSize": 64}},
        evaluation,
        calibration=calibration,
    )
    assert "4-layer llama" in summary
    assert json.dumps(summary)
