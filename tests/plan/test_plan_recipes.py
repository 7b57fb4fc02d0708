"""Recipes, content keys, Job arguments and the served-variant choice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.plan.conftest import STORE, make_spec, spec_dict

from modelpress.api.apiserver import admit
from modelpress.api.reasons import Reason
from modelpress.api.spec import CompressedModelSpec
from modelpress.config import OperatorConfig
from modelpress.plan.observed import SourceRecord
from modelpress.plan.recipes import (
    Candidate,
    choose_variant,
    compress_job_args,
    resolved_variant,
    source_job_args,
    variant_artifact,
    variant_locations,
)

CALIBRATION = {"dataset": {"uri": "s3://data/calib.txt"}, "samples": 8, "sequenceLength": 512}


# --- resolved variants ----------------------------------------------------------------------


def test_a_data_free_step_carries_no_calibration() -> None:
    spec = make_spec()
    assert resolved_variant(spec, spec.variants[0]) == {
        "name": "w8",
        "quantize": {"scheme": "W8A16", "algorithm": "rtn", "ignore": ["lm_head"]},
    }


def test_a_step_that_learns_gets_the_spec_calibration() -> None:
    spec = make_spec()
    resolved = resolved_variant(spec, spec.variants[1])
    assert resolved["quantize"]["calibration"] == CALIBRATION
    assert resolved["quantize"]["groupSize"] == 64


def test_an_fp8_kv_cache_needs_calibration_even_with_rtn() -> None:
    spec = make_spec(
        variants=[
            {
                "name": "kv",
                "quantize": {"scheme": "W8A16", "algorithm": "rtn", "kvCacheScheme": "fp8"},
            }
        ]
    )
    assert resolved_variant(spec, spec.variants[0])["quantize"]["calibration"] == CALIBRATION


def test_a_chain_keeps_its_shape_and_each_step_its_own_calibration() -> None:
    own = {"dataset": {"uri": "s3://data/other.txt"}, "samples": 4, "sequenceLength": 128}
    spec = make_spec(
        variants=[
            {
                "name": "slim",
                "steps": [
                    {"prune": {"method": "layer-drop", "fraction": 0.25, "calibration": own}},
                    {"distill": {"steps": 10}},
                    {"quantize": {"scheme": "W8A16", "algorithm": "rtn"}},
                ],
            }
        ]
    )
    resolved = resolved_variant(spec, spec.variants[0])
    steps = resolved["steps"]
    assert [next(iter(s)) for s in steps] == ["prune", "distill", "quantize"]
    assert steps[0]["prune"]["calibration"] == own
    assert steps[1]["distill"]["calibration"] == CALIBRATION
    assert "calibration" not in steps[2]["quantize"]


def test_without_any_calibration_each_learning_step_gets_generated_text() -> None:
    body = spec_dict()
    del body["calibration"]
    spec = CompressedModelSpec.model_validate(body)
    assert "calibration" not in resolved_variant(spec, spec.variants[0])["quantize"]
    generated = {"generated": {"seed": 0}, "samples": 256, "sequenceLength": 512}
    assert resolved_variant(spec, spec.variants[1])["quantize"]["calibration"] == generated
    with_text = make_spec()
    assert variant_artifact(spec, "base", spec.variants[1], "0.1.0") != variant_artifact(
        with_text, "base", with_text.variants[1], "0.1.0"
    ), "learning from other text is another artifact"


# --- content keys ----------------------------------------------------------------------------


def test_the_key_is_stable_and_the_uri_is_under_artifacts() -> None:
    spec = make_spec()
    key, uri = variant_artifact(spec, "base", spec.variants[1], "0.1.0")
    assert (key, uri) == variant_artifact(make_spec(), "base", make_spec().variants[1], "0.1.0")
    assert len(key) == 20 and uri == f"{STORE}artifacts/{key}/"


@pytest.mark.parametrize(
    "change",
    [
        {"calibration": {"dataset": {"uri": "s3://data/calib.txt"}, "samples": 9}},
        {"evaluation": {"dataset": {"uri": "s3://data/eval.txt"}, "samples": 65}},
        {"variants": [{"name": "w4", "quantize": {"scheme": "W4A16", "groupSize": 32}}]},
    ],
)
def test_what_decides_the_result_changes_the_key(change: dict) -> None:
    before = make_spec()
    after = make_spec(**change)
    w4_before = next(v for v in before.variants if v.name == "w4")
    w4_after = next(v for v in after.variants if v.name == "w4")
    assert (
        variant_artifact(before, "b", w4_before, "1")[0]
        != variant_artifact(after, "b", w4_after, "1")[0]
    )


def test_base_model_and_compressor_version_are_part_of_the_key() -> None:
    spec = make_spec()
    variant = spec.variants[1]
    keys = {
        variant_artifact(spec, "b1", variant, "1")[0],
        variant_artifact(spec, "b2", variant, "1")[0],
        variant_artifact(spec, "b1", variant, "2")[0],
    }
    assert len(keys) == 3


def test_a_rename_or_a_new_gate_threshold_reuses_the_artifact() -> None:
    spec = make_spec()
    renamed = make_spec(
        variants=[
            {"name": "four", "quantize": {"scheme": "W4A16", "algorithm": "gptq", "groupSize": 64}}
        ],
        evaluation={
            "dataset": {"uri": "s3://data/eval.txt"},
            "maxPerplexityIncrease": 0.5,
            "minAgreement": 0.9,
            "maxKlDivergence": 0.05,
        },
    )
    assert "minAccuracyRecovery" not in renamed.evaluation.measurement()
    assert (
        variant_artifact(spec, "b", spec.variants[1], "1")[0]
        == variant_artifact(renamed, "b", renamed.variants[0], "1")[0]
    )


def test_chat_prompts_key_the_variant_and_the_chat_threshold_does_not() -> None:
    def key(**evaluation: object) -> str:
        spec = make_spec(evaluation={"dataset": {"uri": "s3://data/eval.txt"}, **evaluation})
        return variant_artifact(spec, "b", spec.variants[1], "1")[0]

    chat = {"prompts": {"uri": "s3://data/prompts.jsonl"}}
    assert key(chat=chat, maxChatKlDivergence=0.3) == key(chat=chat, maxChatKlDivergence=0.6)
    assert key(chat=chat) != key(), "answers on new prompts are a new measurement"
    assert key(chat=chat) != key(chat=chat | {"maxTokens": 32})


def test_an_upgrade_that_adds_evaluation_fields_keeps_every_stored_variant_key() -> None:
    """`tasks` has no default: a spec written before it existed measures (and so keys its
    variants) exactly as before, and nothing is recomputed after the upgrade."""
    measured = make_spec().evaluation.measurement()
    assert "tasks" not in measured and "minAccuracyRecovery" not in measured
    assert set(measured) == {"dataset", "metric", "samples", "sequenceLength"}


def test_an_upgrade_that_adds_zero_points_keeps_every_stored_w4a16_key() -> None:
    """`symmetric` has no schema default: a W4A16 variant the API server stored before the
    field existed keys exactly as it did then (the key below was computed by the release
    without it); asking for zero points is another artifact."""
    manifest = {
        "apiVersion": "modelpress.dev/v1alpha1",
        "kind": "CompressedModel",
        "metadata": {"name": "m", "namespace": "ml"},
        "spec": spec_dict(),
    }
    admission = admit(manifest)
    assert admission.problems == []
    stored = CompressedModelSpec.model_validate(admission.stored["spec"])
    w4 = next(v for v in stored.variants if v.name == "w4")
    assert "symmetric" not in admission.stored["spec"]["variants"][1]["quantize"]
    assert variant_artifact(stored, "b", w4, "1")[0] == "cbe7de4cf7c1c90c4d8b"
    zero_points = make_spec(
        variants=[{"name": "w4", "quantize": {"scheme": "W4A16", "algorithm": "gptq",
                                              "groupSize": 64, "symmetric": False}}]
    )  # fmt: skip
    assert variant_artifact(zero_points, "b", zero_points.variants[0], "1")[0] != (
        "cbe7de4cf7c1c90c4d8b"
    )


def test_an_upgrade_that_adds_a_training_precision_keeps_every_stored_distill_key() -> None:
    """`precision` has no schema default: a chain the API server stored before the field
    existed keys as it did then (the slim key of the 0.1.0 test below); pinning a
    precision, so every node trains alike, is another artifact, and each choice its own."""
    slim: dict[str, Any] = {
        "name": "slim",
        "steps": [
            {"prune": {"method": "layer-drop", "fraction": 0.25}},
            {"distill": {"steps": 10}},
            {"quantize": {"scheme": "W4A16", "groupSize": 64}},
        ],
    }
    manifest = {
        "apiVersion": "modelpress.dev/v1alpha1",
        "kind": "CompressedModel",
        "metadata": {"name": "m", "namespace": "ml"},
        "spec": spec_dict(variants=[slim]),
    }
    admission = admit(manifest)
    assert admission.problems == []
    assert "precision" not in admission.stored["spec"]["variants"][0]["steps"][1]["distill"]

    def key(spec: CompressedModelSpec) -> str:
        return variant_artifact(spec, "b", spec.variants[0], "1")[0]

    def pinned(precision: str) -> str:
        prune, distill, quantize = slim["steps"]
        steps = [prune, {"distill": distill["distill"] | {"precision": precision}}, quantize]
        return key(make_spec(variants=[slim | {"steps": steps}]))

    stored = key(CompressedModelSpec.model_validate(admission.stored["spec"]))
    assert stored == key(make_spec(variants=[slim]))
    assert len({stored, pinned("fp32"), pinned("bf16")}) == 3


def test_a_new_default_calibration_does_not_recompute_a_data_free_variant() -> None:
    before, after = make_spec(), make_spec(calibration={"dataset": {"uri": "s3://data/new.txt"}})
    assert variant_artifact(before, "b", before.variants[0], "1") == variant_artifact(
        after, "b", after.variants[0], "1"
    )


# --- Job arguments -----------------------------------------------------------------------------


def test_source_job_args() -> None:
    spec = make_spec()
    assert source_job_args(spec) == [
        "fetch",
        "--source",
        '{"huggingface":{"allowPickle":false,"repo":"HuggingFaceTB/SmolLM2-135M-Instruct","revision":"main"}}',
        "--store",
        STORE,
    ]
    assert source_job_args(spec, "/work")[-2:] == ["--work-dir", "/work"]


def test_a_store_uri_without_a_trailing_slash_still_names_the_root() -> None:
    spec = make_spec(storage={"uri": "s3://artifacts/store"})
    assert source_job_args(spec)[-1] == "s3://artifacts/store/"


def test_compress_job_args_carry_the_resolved_recipe_and_the_measurement_only() -> None:
    spec = make_spec()
    args = compress_job_args(
        spec, spec.variants[1], "s3://b/models/k/", "s3://b/artifacts/v/", "/work"
    )
    assert args[0] == "compress"
    assert args[args.index("--base") + 1] == "s3://b/models/k/"
    assert args[args.index("--out") + 1] == "s3://b/artifacts/v/"
    assert json.loads(args[args.index("--variant") + 1]) == resolved_variant(spec, spec.variants[1])
    evaluation = json.loads(args[args.index("--evaluation") + 1])
    assert evaluation == spec.evaluation.measurement()
    assert "maxPerplexityIncrease" not in evaluation and evaluation["samples"] == 64
    assert args[-2:] == ["--work-dir", "/work"]
    assert args[args.index("--cache-dir") + 1] == f"{STORE}evaluations/", "one base scoring"
    assert "--checkpoint-dir" not in args  # nothing to resume without distillation
    assert not any("secret" in a.lower() for a in args)


def test_distilling_variants_checkpoint_into_the_store_beside_their_artifact() -> None:
    chain = [
        {"prune": {"method": "layer-drop", "fraction": 0.25}},
        {"distill": {"steps": 10}},
        {"quantize": {"scheme": "W4A16", "algorithm": "rtn", "groupSize": 64}},
    ]
    spec = make_spec(variants=[{"name": "slim", "steps": chain}])
    args = compress_job_args(spec, spec.variants[0], f"{STORE}models/k/", f"{STORE}artifacts/v1/")
    assert args[args.index("--checkpoint-dir") + 1] == f"{STORE}checkpoints/v1/"


# --- choosing what to serve ----------------------------------------------------------------------


def ok(name: str, size: int) -> Candidate:
    return Candidate(
        name=name, bytes=size, passed=True, gate_message="ok", fits=True, fit_message="fits"
    )


def test_none_serves_nothing() -> None:
    choice = choose_variant(make_spec(serving={"variant": "none"}), [ok("w8", 10)])
    assert (choice.variant, choice.decided, choice.reason) == (None, True, "ServingDisabled")


def test_auto_waits_until_every_variant_is_settled() -> None:
    choice = choose_variant(make_spec(), [ok("w8", 10), Candidate("w4")])
    assert (choice.variant, choice.decided, choice.reason) == (None, False, "WaitingForVariants")
    assert "w4" in choice.message


def test_auto_serves_the_smallest_qualifying_variant() -> None:
    choice = choose_variant(make_spec(), [ok("w8", 10), ok("w4", 6)])
    assert (choice.variant, choice.decided, choice.reason) == ("w4", True, "SmallestQualifying")


def test_auto_breaks_ties_by_name() -> None:
    assert choose_variant(make_spec(), [ok("w8", 6), ok("w4", 6)]).variant == "w4"


def test_auto_skips_failed_gated_and_oversized_variants() -> None:
    candidates = [
        ok("big", 100),
        Candidate("bad", 1, False, "gate says no", True, "fits"),
        Candidate("huge", 2, True, "ok", False, "needs 99 GiB"),
        Candidate("broken", failed="Job failed"),
    ]
    spec = make_spec(
        variants=[
            {"name": n, "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}
            for n in ("big", "bad", "huge", "broken")
        ]
    )
    assert choose_variant(spec, candidates).variant == "big"


def test_auto_with_nothing_qualifying_says_why_for_each() -> None:
    candidates = [
        Candidate("w8", 1, False, "perplexity +30%", True, "fits"),
        Candidate("w4", 2, True, "ok", False, "needs 99 GiB"),
    ]
    choice = choose_variant(make_spec(), candidates)
    assert (choice.variant, choice.decided, choice.reason) == (None, True, "NoVariantQualifies")
    assert "w8: quality gate failed (perplexity +30%)" in choice.message
    assert "w4: does not fit (needs 99 GiB)" in choice.message


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (ok("w4", 5), ("w4", True, "Chosen")),
        (Candidate("w4"), (None, False, "WaitingForVariant")),
        (Candidate("w4", failed="OOM"), (None, True, "VariantFailed")),
        (Candidate("w4", 5, False, "too worse", True, ""), (None, True, "QualityGateFailed")),
        (Candidate("w4", 5, True, "", None, ""), (None, False, "WaitingForSizing")),
        (Candidate("w4", 5, True, "", False, "needs 40 GiB"), (None, True, "DoesNotFit")),
        (
            Candidate("w4", 5, True, "", False, "no CPU kernel", fit_reason=Reason.NO_CPU_KERNEL),
            (None, True, "NoCpuKernel"),
        ),
    ],
)
def test_a_named_variant(candidate: Candidate, expected: tuple) -> None:
    spec = make_spec(serving={"variant": "w4"})
    choice = choose_variant(spec, [ok("w8", 1), candidate])
    assert (choice.variant, choice.decided, choice.reason) == expected


def test_variant_keys_are_stable_across_versions_that_do_not_change_outputs() -> None:
    """Keys of 0.1.0, recorded: a refactor that changes any of them would recompute every
    artifact in every cluster (FP8 is absent: 0.1.0 could not build it)."""
    legacy_source = SourceRecord(id="HuggingFaceTB/SmolLM2-135M-Instruct", revision="0123abcd",
                                 uri=f"{STORE}models/basekey/", key="basekey")  # fmt: skip
    spec = make_spec(
        variants=[
            {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}},
            {"name": "w4", "quantize": {"scheme": "W4A16"}},
            {"name": "w4g", "quantize": {"scheme": "W4A16", "algorithm": "gptq", "groupSize": 64}},
            {"name": "awq", "quantize": {"scheme": "W4A16", "algorithm": "awq", "groupSize": 64}},
            {"name": "int8", "quantize": {"scheme": "W8A8"}},
            {
                "name": "slim",
                "steps": [
                    {"prune": {"method": "layer-drop", "fraction": 0.25}},
                    {"distill": {"steps": 10}},
                    {"quantize": {"scheme": "W4A16", "groupSize": 64}},
                ],
            },
        ],
        compression={"gpu": {"product": "nvidia-a100-80gb"}},  # awq runs on a GPU only
    )
    config = OperatorConfig(compressor_version="0.1.0")
    keys = {name: key for name, (key, _) in variant_locations(spec, legacy_source, config).items()}
    assert keys == {
        "w8": "a969393a3b7644ca08ce",
        "w4": "ffce8956ac7655114824",
        "w4g": "4987398a5798800e23bf",
        "awq": "367810326d2d90cf33d7",
        "int8": "2e308b2e21d48f9da6b9",
        "slim": "98ca4a82b5ea8962d160",
    }
