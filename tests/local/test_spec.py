"""What local mode accepts, refuses and changes before any work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelpress.api.spec import CompressedModelSpec, Task
from modelpress.local.spec import (
    SpecError,
    check_local_inputs,
    check_named_variant,
    cpu_serving_problem,
    load_model,
    local_spec,
)

BASE = {
    "source": {"uri": "file:///models/base/"},
    "storage": {"uri": "file:///store/"},
    "variants": [
        {"name": "w4", "quantize": {"scheme": "W4A16", "algorithm": "rtn", "groupSize": 64}},
        {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}},
    ],
    "evaluation": {"dataset": {"uri": "file:///data/eval.txt"}},
}


def spec(**changes: object) -> CompressedModelSpec:
    return CompressedModelSpec.model_validate({**BASE, **changes})


def test_an_s3_store_is_refused_unless_a_local_one_is_given() -> None:
    remote = spec(storage={"uri": "s3://bucket/prefix/", "secretRef": {"name": "s"}})
    with pytest.raises(SpecError, match="pass --store file:///absolute/path/"):
        local_spec(remote)
    prepared = local_spec(remote, "file:///tmp/store")
    assert prepared.spec.storage.uri == "file:///tmp/store/"
    assert prepared.spec.storage.secret_ref is None
    assert any("--store" in note for note in prepared.notes)
    with pytest.raises(SpecError, match="file:///absolute/path/"):
        local_spec(remote, "s3://other/")


def test_gpus_are_set_aside_with_a_note() -> None:
    prepared = local_spec(
        spec(
            serving={"gpu": {"product": "nvidia-l4"}}, compression={"gpu": {"product": "nvidia-l4"}}
        )
    )
    assert prepared.spec.serving.gpu is None and prepared.spec.compression.gpu is None
    assert len(prepared.notes) == 2


def test_w8a16_named_for_serving_is_refused_before_any_work() -> None:
    with pytest.raises(SpecError, match="W8A16, which vLLM's CPU kernels cannot serve"):
        check_named_variant(spec(serving={"variant": "w8"}))
    check_named_variant(spec(serving={"variant": "w4"}))
    check_named_variant(spec(serving={"variant": "auto"}))
    check_named_variant(spec(serving={"variant": "none"}))


def test_auto_with_nothing_servable_on_cpu_is_refused() -> None:
    only_w8 = spec(variants=[BASE["variants"][1]])  # type: ignore[index]
    with pytest.raises(SpecError, match="no variant can be served on this CPU"):
        check_named_variant(only_w8)


def test_mixed_precision_with_w8a16_blocks_is_refused_on_cpu_and_unquantized_ones_serve() -> None:
    def mixed(**precision: object) -> CompressedModelSpec:
        quantize = {"scheme": "W4A16", "groupSize": 64, "mixedPrecision": {"budget": 0.5,
                    **precision}}  # fmt: skip
        return spec(
            variants=[{"name": "m", "quantize": quantize}],
            calibration={"dataset": {"uri": "file:///data/calib.txt"}},
            serving={"variant": "m"},
        )

    with pytest.raises(SpecError, match=r"set mixedPrecision\.sensitiveScheme to none"):
        check_named_variant(mixed())
    check_named_variant(mixed(sensitiveScheme="none"))


def test_unquantized_chains_are_servable() -> None:
    pruned = spec(
        variants=[{"name": "p", "prune": {"method": "layer-drop", "fraction": 0.1}}],
        calibration={"dataset": {"uri": "file:///data/calib.txt"}},
    )
    assert cpu_serving_problem(pruned.variants[0]) is None


def test_missing_local_inputs_are_named(tmp_path: Path) -> None:
    (tmp_path / "eval.txt").write_text("text")
    good = spec(
        source={"uri": f"file://{tmp_path}/"},
        evaluation={"dataset": {"uri": f"file://{tmp_path}/eval.txt"}},
    )
    check_local_inputs(good)
    with pytest.raises(SpecError, match=r"source.uri file:///models/base/ does not exist .*setup"):
        check_local_inputs(spec(), {"source.uri": "run setup"})
    task = {"name": "qa", "dataset": {"uri": f"file://{tmp_path}/qa.jsonl"}}
    with_task = good.model_copy(
        update={"evaluation": good.evaluation.model_copy(update={"tasks": [Task(**task)]})}
    )
    with pytest.raises(SpecError, match=r"evaluation.tasks\[0\].dataset.uri .*qa.jsonl does not"):
        check_local_inputs(with_task)


def test_unreadable_files_say_why(tmp_path: Path, spec_file: Callable[..., Path]) -> None:
    write_spec = spec_file
    with pytest.raises(SpecError, match="cannot read"):
        load_model(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_model(broken)
    other = tmp_path / "other.yaml"
    other.write_text("kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n")
    with pytest.raises(SpecError, match="has no CompressedModel"):
        load_model(other)
    invalid = write_spec(tmp_path / "invalid.yaml", serving="  serving: {variant: nope}")
    with pytest.raises(SpecError, match=r"serving\.variant 'nope' names no variant"):
        load_model(invalid)
    twice = tmp_path / "twice.yaml"
    text = write_spec(tmp_path / "one.yaml").read_text()
    twice.write_text(text + "---\n" + text.replace("name: tiny", "name: other"))
    with pytest.raises(SpecError, match="choose one with --name"):
        load_model(twice)
    assert load_model(twice, "other").metadata.name == "other"


def test_a_chain_that_tunes_its_scales_is_judged_by_its_quantize_step() -> None:
    """A distill step after quantize leaves the artifact in the quantize step's format:
    W8A16 stays unservable on CPU, W4A16 serves."""

    def tuned(scheme: str) -> CompressedModelSpec:
        return spec(
            variants=[
                {
                    "name": "t",
                    "steps": [{"quantize": {"scheme": scheme}}, {"distill": {"steps": 10}}],
                }
            ],
            calibration={"dataset": {"uri": "file:///data/calib.txt"}},
            serving={"variant": "t"},
        )

    with pytest.raises(SpecError, match="W8A16"):
        check_named_variant(tuned("W8A16"))
    assert cpu_serving_problem(tuned("W4A16").variants[0]) is None
