"""Recipes checked against the base model's config.json before any Job starts
(SmolLM2-135M: hidden 576, MLP 1536, 30 layers, 9 heads of 64)."""

from __future__ import annotations

import pytest
from tests.plan.conftest import BASE, SOURCE, make_spec

from modelpress.config import OperatorConfig
from modelpress.plan.observed import Observed, Owner
from modelpress.plan.preflight import recipe_problem
from modelpress.plan.reconcile import plan_model

OWNER = Owner(name="tiny", namespace="ml", uid="uid-1", generation=1)


def problem(variant: dict, **spec: object) -> str | None:
    built = make_spec(variants=[variant], **spec)
    verdict = recipe_problem(built, built.variants[0], BASE.config)
    assert verdict is None or verdict.reason == "RecipeDoesNotFitModel"
    return verdict.message if verdict else None


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (
            {"name": "w4", "quantize": {"scheme": "W4A16", "groupSize": 128}},
            "spec.variants[0].quantize: groupSize 128 does not divide the input width 576 of "
            "q_proj, o_proj, up_proj: use groupSize 64",
        ),
        (
            {"name": "w8", "quantize": {"scheme": "W8A16", "groupSize": 256}},
            "or leave groupSize unset for one scale per output channel",
        ),
        (
            {"name": "slim", "prune": {"method": "layer-drop", "fraction": 0.99}},
            "spec.variants[0].prune: prune fraction 0.99 of 30 layers removes 30 and leaves no "
            "layer: use a fraction below 0.983",
        ),
        (
            {"name": "kd", "distill": {"studentLayers": 30}},
            "spec.variants[0].distill: studentLayers 30 must be fewer than the teacher's 30 layers",
        ),
        (
            {
                "name": "chain",
                "steps": [
                    {"prune": {"method": "ffn-width", "fraction": 0.3}},
                    {"quantize": {"scheme": "W4A16", "groupSize": 256}},
                ],
            },
            "spec.variants[0].steps[1].quantize: groupSize 256 does not divide the input width "
            "576, 1088",
        ),
        (
            {
                "name": "mixed",
                "quantize": {"scheme": "W4A16", "groupSize": 64, "mixedPrecision": {"budget": 0.4}},
            },
            "spec.variants[0].quantize: mixedPrecision.budget 0.4 is below 0.420, this model's "
            "size with every block at W4A16: raise the budget above 0.420",
        ),
    ],
)
def test_a_recipe_the_model_cannot_take_is_named_with_the_fix(variant: dict, expected: str) -> None:
    message = problem(variant)
    assert message is not None and expected in message


@pytest.mark.parametrize(
    "variant",
    [
        {"name": "w4", "quantize": {"scheme": "W4A16", "groupSize": 64}},
        {"name": "w4-default", "quantize": {"scheme": "W4A16"}},  # 64 on 576, 128 on 1,536
        {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}},
        {"name": "fp8", "quantize": {"scheme": "FP8_DYNAMIC"}},
        {"name": "kd", "distill": {"studentLayers": 20}},
        {"name": "ign", "quantize": {"scheme": "W4A16", "ignore": ["lm_head", "re:.*proj"]}},
        {
            "name": "slim",
            "steps": [
                {"prune": {"method": "layer-drop", "fraction": 0.25}},
                {"distill": {"steps": 10}},
                {"quantize": {"scheme": "W4A16", "groupSize": 64}},
            ],
        },
        {
            "name": "mixed",
            "quantize": {"scheme": "W4A16", "groupSize": 64, "mixedPrecision": {"budget": 0.5}},
        },
        {  # below 0.420 (every layer at group 64): the MLP input's groups of 128 save it
            "name": "mixed-default",
            "quantize": {"scheme": "W4A16", "mixedPrecision": {"budget": 0.4195}},
        },
        {  # a quarter of the layers gone: W4A16 of what is left is below 0.37
            "name": "slim-mixed",
            "steps": [
                {"prune": {"method": "layer-drop", "fraction": 0.25}},
                {
                    "quantize": {
                        "scheme": "W4A16",
                        "groupSize": 64,
                        "mixedPrecision": {"budget": 0.37},
                    }
                },
            ],
        },
    ],
)
def test_recipes_the_model_takes_pass(variant: dict) -> None:
    assert problem(variant) is None


def test_a_sequence_longer_than_the_model_is_named_by_its_field() -> None:
    message = problem(
        {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}},
        evaluation={"dataset": {"uri": "s3://data/eval.txt"}, "sequenceLength": 16384},
    )
    assert message == (
        "spec.evaluation.sequenceLength is 16384 but the base model has 8192 positions: use at "
        "most 8192"
    )


def test_the_planner_starts_no_job_for_a_recipe_the_model_cannot_take() -> None:
    spec = make_spec(
        variants=[
            {"name": "w4", "quantize": {"scheme": "W4A16", "groupSize": 128}},
            {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}},
        ]
    )
    result = plan_model(
        OWNER, spec, Observed(source=SOURCE, base=BASE), OperatorConfig(), None, "now"
    )
    variants = [o["metadata"]["labels"]["modelpress.dev/variant"] for o in result.create]
    assert variants == ["w8"]
    w4 = next(v for v in result.wire_status["variants"] if v["name"] == "w4")
    compressed = next(c for c in w4["conditions"] if c["type"] == "Compressed")
    assert (compressed["status"], compressed["reason"]) == ("False", "RecipeDoesNotFitModel")
    ready = next(c for c in result.wire_status["conditions"] if c["type"] == "VariantsReady")
    assert ready["reason"] == "RecipeDoesNotFitModel"
