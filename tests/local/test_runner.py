"""The local reconcile loop, with the compression Job's work replaced by a quick publish.

The fetch Job is real (a local process running `modelpress fetch`); the compress
Job is swapped for a function that publishes what the compressor would (files and
metadata), so the loop, reuse, the gate, cleanup and the status are tested in
seconds. The real compressor and vLLM run in test_vllm_e2e.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from modelpress.local import runner as runner_module
from modelpress.local.console import Console
from modelpress.local.jobs import JobResult, LocalMounts
from modelpress.local.processes import ProcessResult
from modelpress.local.runner import LocalRun, RunOptions
from modelpress.local.spec import load_model
from modelpress.local.uploads import remove_unpublished, unpublished_prefixes
from modelpress.plan import names
from modelpress.storage import publish, read_manifest

SMOLLM2_CONFIG = Path(__file__).parents[1] / "sizing" / "configs" / "SmolLM2-135M.json"


@pytest.fixture
def workspace(tmp_path: Path, spec_file: Callable[..., Path]) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(SMOLLM2_CONFIG.read_text())
    (model / "model.safetensors").write_bytes(b"\0" * 4096)
    (tmp_path / "eval.txt").write_text("held-out text\n")
    spec_file(
        tmp_path / "model.yaml",
        source=f"  source: {{uri: file://{model}/}}",
        variants="  variants:\n"
        "    - {name: small, quantize: {scheme: W4A16, algorithm: rtn, groupSize: 64}}\n"
        "    - {name: worse, quantize: {scheme: W4A16, algorithm: rtn, groupSize: 32}}",
        serving="  serving: {variant: none}",
    )
    return tmp_path


INT4_WEIGHT_ONLY = {
    "quant_method": "compressed-tensors",
    "config_groups": {"group_0": {"weights": {"type": "int", "num_bits": 4, "group_size": 64}}},
}


def fake_compress(
    real_run_job: Callable[..., JobResult], calls: list[str]
) -> Callable[..., JobResult]:
    """Runs fetch Jobs for real; publishes a compress Job's artifact as the compressor would:
    every variant W4A16 except the one named dense, and only the one named worse failing
    the quality gate."""

    def run_job(job: Mapping[str, Any], mounts: LocalMounts, **kwargs: Any) -> JobResult:
        labels = job["metadata"]["labels"]
        if labels[names.LABEL_COMPONENT] != names.COMPRESS:
            return real_run_job(job, mounts, **kwargs)
        variant = labels[names.LABEL_VARIANT]
        calls.append(variant)
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        out = args[args.index("--out") + 1]
        staging = mounts.scratch_dir / "out"
        staging.mkdir(parents=True)
        (staging / "model.safetensors").write_bytes(b"\1" * (1024 if variant == "small" else 2048))
        config = json.loads(SMOLLM2_CONFIG.read_text())
        if variant != "dense":  # the others are W4A16, as their config.json says
            config["quantization_config"] = INT4_WEIGHT_ONLY
        increase = 0.5 if variant == "worse" else 0.05
        metrics = {
            "perplexity": 10 * (1 + increase),
            "basePerplexity": 10.0,
            "perplexityIncrease": increase,
        }
        publish(out, staging, {"metrics": metrics, "modelConfig": config})
        done = ProcessResult(("compress",), 0, 0.1, False, Path("/dev/null"), ())
        return JobResult(job["metadata"]["name"], (done,))

    return run_job


def run_once(workspace: Path) -> LocalRun:
    model = load_model(workspace / "model.yaml")
    run = LocalRun(model, RunOptions(work_dir=workspace / "work"), Console(rich=False))
    run.preflight()
    run.reconcile()
    return run


def test_a_second_run_reuses_every_artifact(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(runner_module, "run_job", fake_compress(runner_module.run_job, calls))

    first = run_once(workspace)
    assert calls == ["small", "worse"]
    assert first.result.built == ["small", "worse"] and first.result.reused == []
    assert first.result.ready, first.result.status.conditions
    variants = {v["name"]: v for v in first.result.status.to_wire()["variants"]}
    gate = {
        v: next(c for c in e["conditions"] if c["type"] == "QualityGate")
        for v, e in variants.items()
    }
    assert gate["small"]["status"] == "True" and gate["worse"]["status"] == "False"
    assert variants["small"]["artifactUri"].startswith(f"file://{workspace}/store/artifacts/")
    assert read_manifest(variants["small"]["artifactUri"]) is not None

    capsys.readouterr()
    second = run_once(workspace)
    assert calls == ["small", "worse"], "the second run must not compress again"
    assert second.result.built == []
    assert sorted(second.result.reused) == ["base", "small", "worse"]
    said = capsys.readouterr().err
    assert said.count("(already published)") == 3
    assert [v.key for v in second.result.status.variants] == [
        v.key for v in first.result.status.variants
    ]


def test_a_failed_job_leaves_no_half_published_artifact(workspace: Path) -> None:
    model = load_model(workspace / "model.yaml")
    run = LocalRun(model, RunOptions(work_dir=workspace / "work"), Console(rich=False))
    store = Path(run.store.removeprefix("file://"))
    earlier = store / "artifacts" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "part").write_text("someone else's upload in progress")
    partial = store / "artifacts" / "0123456789abcdef0123"
    script = (
        "import os, sys\n"
        f"os.makedirs({str(partial)!r}, exist_ok=True)\n"
        f"open(os.path.join({str(partial)!r}, 'model.safetensors'), 'w').write('half')\n"
        "print('publishing, then failing', flush=True)\n"
        "sys.exit(1)\n"
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "tiny-small-0000",
            "labels": {names.LABEL_COMPONENT: names.COMPRESS, names.LABEL_VARIANT: "small"},
        },
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "c", "command": [sys.executable, "-c", script]}]}
            }
        },
    }
    run._run_job(job)
    assert not partial.exists(), "the failed Job's unfinished upload must be removed"
    assert earlier.exists(), "an upload that began before the Job is not this run's to remove"
    assert run.result.failed == ["small"]
    state = run.world.jobs["tiny-small-0000"]
    assert state.is_failed and state.failure_reason == "ProcessFailed"
    assert run.world.job_messages["tiny-small-0000"] == "publishing, then failing"


def test_unpublished_prefixes_lists_only_uncommitted(tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store/"
    committed = tmp_path / "files"
    committed.mkdir()
    (committed / "a").write_text("a")
    publish(f"{store}artifacts/done/", committed)
    (tmp_path / "store" / "artifacts" / "half").mkdir(parents=True)
    (tmp_path / "store" / "artifacts" / "half" / "a").write_text("a")
    assert unpublished_prefixes(store) == {f"{store}artifacts/half/"}
    assert remove_unpublished(store, set()) == [f"{store}artifacts/half/"]
    assert read_manifest(f"{store}artifacts/done/") is not None


def serving_workspace(workspace: Path) -> Path:
    text = (workspace / "model.yaml").read_text()
    text = text.replace(
        "serving: {variant: none}", "serving: {variant: auto, maxModelLen: 1024, maxNumSeqs: 2}"
    )
    (workspace / "model.yaml").write_text(text)
    return workspace


def test_the_serving_deployment_runs_locally(
    workspace: Path, fake_vllm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(runner_module, "run_job", fake_compress(runner_module.run_job, calls))
    record = workspace / "vllm.json"
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    monkeypatch.setenv("VIRTUAL_ENV", "/the/compressor/venv")
    serving_workspace(workspace)
    model = load_model(workspace / "model.yaml")
    options = RunOptions(work_dir=workspace / "work", vllm=str(fake_vllm), port=0)
    run = LocalRun(model, options, Console(rich=False))
    try:
        run.preflight()
        result = run.reconcile()
        assert result.ready, result.status.conditions
        assert result.server is not None
        assert run.ask() == "Paris, of course."
        status_path = run.write_status()
    finally:
        run.stop()
    assert result.server.process.poll() is not None, "the server is stopped"

    status = json.loads(status_path.read_text())
    assert status["serving"]["variant"] == "small"
    assert status["serving"]["endpoint"] == f"{result.server.base_url}/v1"
    serving = next(c for c in status["conditions"] if c["type"] == "Serving")
    assert result.server.base_url in serving["message"]
    key = next(v["key"] for v in status["variants"] if v["name"] == "small")
    served = workspace / "work" / "tiny" / "serving" / "models" / key
    assert result.served_root == str(served)
    manifest = read_manifest(
        next(v["artifactUri"] for v in status["variants"] if v["name"] == "small")
    )
    assert manifest is not None
    assert sorted(p.name for p in served.iterdir()) == sorted(f.path for f in manifest.files)

    seen = json.loads(record.read_text())
    argv = seen["argv"]
    assert argv[argv.index("--model") + 1] == str(served)
    assert argv[argv.index("--served-model-name") + 1] == "tiny"
    assert argv[argv.index("--max-model-len") + 1] == "1024"
    assert argv[argv.index("--max-num-seqs") + 1] == "2"
    assert "--enforce-eager" in argv
    assert seen["env"]["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert "VIRTUAL_ENV" not in seen["env"], "the caller's Python settings must not reach vLLM"
    # vLLM binds Unix sockets in TMPDIR; their paths must stay under 108 bytes.
    temp = seen["env"]["TMPDIR"]
    assert len(temp) + len("/afe3efb3-2b5d-4f48-9911-360d6bd90f1a") < 100
    assert seen["env"]["HOME"] == temp
    assert not Path(temp).exists(), "the server's temp dir is removed when it stops"


def test_without_the_int4_kernel_auto_serves_an_unquantized_variant(
    workspace: Path, fake_vllm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On vLLM's AVX2 build W4A16 would start and then fail every request: the smaller
    W4A16 variant is reported NoCpuKernel and the unquantized one is served."""
    monkeypatch.setattr(runner_module, "run_job", fake_compress(runner_module.run_job, []))
    monkeypatch.setenv("FAKE_VLLM_NO_INT4", "1")
    serving_workspace(workspace)
    calib = workspace / "calib.txt"
    calib.write_text("calibration text\n")
    text = (
        (workspace / "model.yaml")
        .read_text()
        .replace(
            "    - {name: worse,",
            "    - {name: dense, prune: {method: ffn-width, fraction: 0.1}}\n    - {name: worse,",
        )
        .replace("  serving:", f"  calibration: {{dataset: {{uri: file://{calib}}}}}\n  serving:")
    )
    (workspace / "model.yaml").write_text(text)
    run = LocalRun(
        load_model(workspace / "model.yaml"),
        RunOptions(work_dir=workspace / "work", vllm=str(fake_vllm), port=0),
        Console(rich=False),
    )
    try:
        run.preflight()
        result = run.reconcile()
        status = result.status.to_wire()
    finally:
        run.stop()
    assert status["serving"]["variant"] == "dense", status["conditions"]
    small = next(v for v in status["variants"] if v["name"] == "small")
    fits = next(c for c in small["conditions"] if c["type"] == "Fits")
    assert fits["status"] == "False" and fits["reason"] == "NoCpuKernel"
    assert "AVX-512" in fits["message"]


def test_no_serve_compresses_and_evaluates_without_vllm(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runner_module, "run_job", fake_compress(runner_module.run_job, []))
    monkeypatch.setattr(runner_module, "find_vllm", lambda *_: pytest.fail("vLLM looked for"))
    serving_workspace(workspace)
    run = LocalRun(
        load_model(workspace / "model.yaml"),
        RunOptions(work_dir=workspace / "work", serve=False),
        Console(rich=False),
    )
    run.preflight()
    result = run.reconcile()
    assert result.ready and result.server is None
    assert run.spec.serving.variant == "none"
    assert "serving.variant auto set aside: --no-serve" in capsys.readouterr().err


def test_a_server_that_dies_at_start_is_reported_with_its_log(
    workspace: Path, fake_vllm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelpress.local.errors import ServerStartError

    monkeypatch.setattr(runner_module, "run_job", fake_compress(runner_module.run_job, []))
    monkeypatch.setenv("FAKE_VLLM_FAIL", "1")
    serving_workspace(workspace)
    run = LocalRun(
        load_model(workspace / "model.yaml"),
        RunOptions(work_dir=workspace / "work", vllm=str(fake_vllm), port=0),
        Console(rich=False),
    )
    run.preflight()
    with pytest.raises(ServerStartError, match="cannot load this checkpoint"):
        run.reconcile()
    run.stop()


def test_a_model_without_chat_template_is_asked_through_completions(
    workspace: Path,
    fake_vllm: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(runner_module, "run_job", fake_compress(runner_module.run_job, []))
    monkeypatch.setenv("FAKE_VLLM_NO_TEMPLATE", "1")
    serving_workspace(workspace)
    run = LocalRun(
        load_model(workspace / "model.yaml"),
        RunOptions(work_dir=workspace / "work", vllm=str(fake_vllm), port=0, prompt="Capital?"),
        Console(rich=False),
    )
    try:
        run.preflight()
        run.reconcile()
        answer = run.ask()
    finally:
        run.stop()
    assert run.result.endpoint == "/v1/completions"
    assert answer is not None and answer.startswith("Paris ")
    request = json.loads(answer.removeprefix("Paris "))
    assert request["prompt"] == "Question: Capital?\nAnswer:" and request["min_tokens"] == 1
    assert "has no chat template" in capsys.readouterr().err
