"""Properties of admission over generated CompressedModels, valid and broken:

- nothing raises: `validate`'s judges, the API server's admission and the planner
  answer every document with problems or a plan;
- every refusal names a field;
- what the API server accepts, the operator accepts (every rule that needs no model
  config is enforced at admission), and storing is idempotent: the stored object,
  admitted again, is stored unchanged;
- the planner's status for an accepted spec is one the API server stores.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from tests.plan.conftest import BASE, SOURCE

from modelpress.api.admission import check
from modelpress.api.apiserver import admit, status_problems
from modelpress.api.resource import read_spec
from modelpress.config import OperatorConfig
from modelpress.plan.observed import Observed, Owner
from modelpress.plan.reconcile import plan_model

URIS = [
    "s3://data/calib.txt",
    "s3://data/eval.txt",
    "s3://data/other.txt",
    "file:///data/x.txt",
    "s3://ab/",
    "gs://bucket/x",
    "file://relative/x",
    "s3://key:secret@bucket/x",
    "s3://data/a/../b",
]
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
    st.lists(st.integers(0, 3), max_size=2),
)


def documents(junky: bool) -> st.SearchStrategy[dict[str, Any]]:
    """CompressedModels: `junky` ones break anywhere; the others hold only values each
    field allows, with the cross-field choices (schemes and algorithms, chains,
    calibrations, names) left free."""

    def maybe_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(strategy, strategy, strategy, strategy, junk) if junky else strategy

    def pick(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
        return maybe_junk(st.sampled_from(valid + invalid if junky else valid))

    uri = pick(URIS[:4], URIS[4:])
    calibration = st.fixed_dictionaries(
        {"dataset": st.fixed_dictionaries({"uri": uri})},
        optional={"samples": pick([1, 8, 300], [0, -1]), "sequenceLength": pick([64, 512], [8])},
    )
    quantize = st.fixed_dictionaries(
        {"scheme": pick(["W8A16", "W4A16", "W8A8", "FP8_DYNAMIC"], ["W3A16"])},
        optional={
            "algorithm": pick(["rtn", "gptq", "awq"], ["magic"]),
            "groupSize": pick([16, 32, 64, 128], [7, 5000]),
            "symmetric": pick([True, False], ["no"]),
            "kvCacheScheme": pick(["fp8"], ["int4"]),
            "ignore": st.lists(st.sampled_from(["lm_head", "re:.*down_proj"]), max_size=2),
            "mixedPrecision": st.fixed_dictionaries(
                {"budget": pick([0.3, 0.5], [0, 1.5])},
                optional={"sensitiveScheme": pick(["W8A16", "none"], ["W4A16"])},
            ),
            "calibration": calibration,
        },
    )
    prune = st.fixed_dictionaries(
        {
            "method": pick(["layer-drop", "ffn-width"], ["2:4"]),
            "fraction": pick([0.1, 0.25, 0.5], [0.0, 1.0]),
        },
        optional={"calibration": calibration},
    )
    distill = st.fixed_dictionaries(
        {},
        optional={
            "steps": pick([1, 50], [0]),
            "studentLayers": pick([1, 4, 40], [0]),
            "temperature": pick([1.0, 2.0], [0.0]),
            "learningRate": pick([5e-5, 2e-4], [2.0]),
            "precision": pick(["fp32", "bf16"], ["fp16", "BF16"]),
            "calibration": calibration,
        },
    )
    actions = [
        st.fixed_dictionaries({"quantize": quantize}),
        st.fixed_dictionaries({"prune": prune}),
        st.fixed_dictionaries({"distill": distill}),
    ]
    if junky:
        actions += [st.fixed_dictionaries({"prune": prune, "quantize": quantize}), st.just({})]
    action = st.one_of(*actions)
    names = pick(["w4", "w8", "slim", "4bit", "kd"], ["W4", "a" * 25])
    variant = st.one_of(
        st.builds(lambda name, body: {"name": name, **body}, names, action),
        st.builds(
            lambda name, steps: {"name": name, "steps": steps},
            names,
            st.lists(action, min_size=0 if junky else 1, max_size=4 if junky else 3),
        ),
    )
    body = st.fixed_dictionaries(
        {
            "source": pick(
                [
                    {"huggingface": {"repo": "HuggingFaceTB/SmolLM2-135M-Instruct"}},
                    {"uri": "s3://models/base/smollm2/"},
                ],
                [
                    {"huggingface": {"repo": "org/m"}, "uri": "s3://models/x/"},
                    {"huggingface": {"repo": "no-slash"}},
                ],
            ),
            "storage": st.fixed_dictionaries({"uri": uri}),
            **({} if junky else {"calibration": calibration}),
            "variants": maybe_junk(st.lists(variant, min_size=1, max_size=3)),
            "evaluation": maybe_junk(
                st.fixed_dictionaries(
                    {"dataset": st.fixed_dictionaries({"uri": uri})},
                    optional={
                        "maxPerplexityIncrease": pick([0.1, 0.5], [-1.0]),
                        "sequenceLength": pick([64, 512, 16384], []),
                    },
                )
            ),
        },
        optional={
            **({"calibration": maybe_junk(calibration)} if junky else {}),
            "serving": maybe_junk(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "variant": st.sampled_from(["auto", "none", "w4", "missing"]),
                        "replicas": pick([1, 3], [-1]),
                        "gpu": pick([{"product": "nvidia-l4"}], [{"product": "Bad GPU"}]),
                    },
                )
            ),
            "deletionPolicy": pick(["Retain", "Delete"], ["Keep"]),
            **({"unknownField": junk} if junky else {}),
        },
    )
    return st.builds(
        lambda name, spec: {
            "apiVersion": "modelpress.dev/v1alpha1",
            "kind": "CompressedModel",
            "metadata": {"name": name, "namespace": "ml"},
            "spec": spec,
        },
        pick(["tiny", "smollm2"], ["Bad_Name", "x" * 40, "7b"]),
        maybe_junk(body),
    )


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OWNER = Owner(name="tiny", namespace="ml", uid="uid-1", generation=1)


@SETTINGS
@given(st.one_of(documents(junky=True), documents(junky=False)))
def test_every_document_gets_an_answer_and_every_refusal_names_a_field(manifest: dict) -> None:
    problems = check(manifest)
    for problem in problems:
        assert problem.path and problem.path != "(root)", problem
        assert problem.path.split(".")[0].split("[")[0] in ("spec", "metadata"), problem
        assert problem.message, problem


@SETTINGS
@given(documents(junky=False))
def test_what_the_api_server_stores_the_operator_accepts_and_stores_again_unchanged(
    manifest: dict,
) -> None:
    admission = admit(manifest)
    if not admission.accepted:
        return
    stored = admission.stored
    assert check(stored) == [], "accepted by the API server, refused by the operator"
    again = admit(stored)
    assert again.accepted and again.stored == stored
    parsed, problems = read_spec(stored["spec"])
    assert parsed is not None and problems == []
    plan = plan_model(
        OWNER, parsed, Observed(source=SOURCE, base=BASE), OperatorConfig(), None, "now"
    )
    assert status_problems(plan.wire_status) == []


def test_the_well_formed_generator_makes_documents_the_api_server_accepts() -> None:
    """The properties above say something only if accepted documents are generated."""
    found = find(documents(junky=False), lambda m: admit(m).accepted, settings=SETTINGS)
    assert admit(found).accepted
