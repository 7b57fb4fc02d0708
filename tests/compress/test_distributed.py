"""Distillation over two processes (torchrun, gloo on this CPU) trains what one process
trains: the same loss within float tolerance, the same artifact format, one writer of
checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from modelpress.api.steps import DistillStep, PruneStep, QuantizeStep
from modelpress.compress import compress_variant
from modelpress.compress.distributed import Group, going_on
from modelpress.compress.preflight import PlannedStep
from modelpress.storage import fetch, publish, read_manifest

VARIANT = {
    "name": "slim",
    "steps": [
        {"prune": {"method": "layer-drop", "fraction": 0.25}},
        {"distill": {"steps": 6, "batchSize": 4, "checkpointEvery": 3, "learningRate": 0.001}},
    ],
}
#: The same healing, then quantized, then its scales tuned, which rank 0 trains alone.
QUANTIZED = VARIANT | {
    "steps": [
        *VARIANT["steps"],
        {"quantize": {"scheme": "W4A16", "algorithm": "gptq", "groupSize": 32}},
        {"distill": {"steps": 4, "batchSize": 4}},
    ]
}
SETTINGS = {"samples": 8, "sequenceLength": 64}
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def exact_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """fp32 on every CPU: the gangs' results are compared with one process's to within
    fp32's rounding, which bf16 autocast (on CPUs that have it) would exceed."""
    monkeypatch.setenv("MODELPRESS_TRAINING_PRECISION", "fp32")


def request(texts: dict[str, str]) -> tuple[dict, dict]:
    evaluation = {
        "dataset": {"uri": f"file://{texts['evaluation']}"},
        "samples": 4,
        "sequenceLength": 64,
    }
    calibration = {"dataset": {"uri": f"file://{texts['calibration']}"}, **SETTINGS}
    return evaluation, calibration


def pair_command(base, variant, evaluation, calibration, out: str, work: Path) -> list[str]:
    """`modelpress compress` as a torchrun gang of two processes on this machine."""
    return [
        str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "--no-python",
        str(BIN / "modelpress"), "compress",
        "--base", str(base), "--variant", json.dumps(variant),
        "--evaluation", json.dumps(evaluation), "--calibration", json.dumps(calibration),
        "--out", out, "--work-dir", str(work), "--threads", "1",
        "--checkpoint-dir", str(work / "ck2"),
    ]  # fmt: skip


def alone(base, variant, evaluation, calibration, tmp_path) -> Any:
    """The variant compressed by one process, as the gang's reference."""
    return compress_variant(
        str(base), variant, evaluation, f"file://{tmp_path}/single/artifacts/slim/",
        calibration=calibration, work_dir=tmp_path, checkpoint_dir=str(tmp_path / "ck1"),
    )  # fmt: skip


def test_two_processes_train_what_one_trains(tiny_model, texts, tmp_path) -> None:
    evaluation, calibration = request(texts)
    single_out = f"file://{tmp_path}/single/artifacts/slim/"
    single = alone(tiny_model, VARIANT, evaluation, calibration, tmp_path)

    out = f"file://{tmp_path}/pair/artifacts/slim/"
    published = f"file://{tmp_path}/pair/models/tiny/"  # the gang downloads it: once
    publish(published, tiny_model, {"source": {"huggingface": "org/tiny", "revision": "c0ffee"}})
    command = pair_command(published, VARIANT, evaluation, calibration, out, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stderr.count("downloading the base model") == 1, run.stderr[-4000:]
    assert "the base model is already downloaded" in run.stderr
    assert len(list(tmp_path.glob("base-*"))) == 1, "one copy in the shared work directory"
    summaries = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert sorted(bool(s.get("helper")) for s in summaries) == [False, True], run.stdout

    manifest = read_manifest(out)
    assert manifest is not None, "rank 0 published"
    meta = manifest.metadata
    pair_step = meta["lineage"][1]["details"]
    one_step = single.metadata["lineage"][1]["details"]
    assert pair_step["processes"] == 2 and "processes" not in one_step
    assert pair_step["sharding"] == "replicate"
    assert pair_step["finalLoss"] == pytest.approx(one_step["finalLoss"], rel=1e-3)
    assert pair_step["trainedTokens"] == one_step["trainedTokens"]
    pair, one = meta["metrics"], single.metadata["metrics"]
    assert pair["perplexity"] == pytest.approx(one["perplexity"], rel=1e-3)
    single_manifest = read_manifest(single_out)
    assert single_manifest is not None
    assert sorted(f.path for f in manifest.files) == sorted(f.path for f in single_manifest.files)

    fetch(out, tmp_path / "pair-files")
    fetch(single_out, tmp_path / "single-files")
    ours = load_file(tmp_path / "pair-files" / "model.safetensors")
    theirs = load_file(tmp_path / "single-files" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    worst = max((ours[k].float() - theirs[k].float()).abs().max().item() for k in ours)
    assert worst < 0.02, f"weights differ by up to {worst} (bf16 rounding of fp32 training)"
    saved = sorted(p.name for p in (tmp_path / "ck2").rglob("step-*"))
    assert saved == ["step-00000006"], "rank 0's checkpoints (the store keeps the latest)"


def test_a_batch_that_does_not_split_over_the_processes_is_refused() -> None:
    from modelpress.api.steps import DistillStep
    from modelpress.compress.distill import distill

    step = DistillStep(steps=1, batch_size=3)
    with pytest.raises(ValueError, match="batchSize 3 does not split over 2 processes"):
        distill(None, None, step, None, ranks=Group(rank=0, world_size=2))  # type: ignore[arg-type]


def test_a_group_shares_out_the_batch() -> None:
    rows = [5, 1, 7, 3]
    assert Group(0, 2).shard(rows) == [5, 7] and Group(1, 2).shard(rows) == [1, 3]
    assert Group().shard(rows) == rows and Group().mean(2.5) == 2.5


def planned(*kinds: str) -> list[PlannedStep]:
    actions = {
        "prune": PruneStep(method="ffn-width", fraction=0.25),
        "distill": DistillStep(steps=2),
        "quantize": QuantizeStep(scheme="W4A16", algorithm="rtn"),
    }
    return [PlannedStep(i, kind, actions[kind], None) for i, kind in enumerate(kinds)]


@pytest.mark.parametrize(
    ("remaining", "together"),
    [
        (planned("prune", "distill", "quantize"), True),
        (planned("quantize", "distill"), False),  # scale tuning: rank 0 alone
        (planned("prune", "quantize"), False),
        (planned("prune"), False),
        (planned(), False),
    ],
)
def test_a_gang_trains_together_only_up_to_the_quantize_step(remaining, together) -> None:
    helper, leader = Group(1, 2, "cpu", "full"), Group(0, 2, "cpu", "full")
    assert going_on(helper, remaining) == (helper if together else None)
    assert going_on(leader, remaining) == (leader if together else Group(sharding="full"))
    assert going_on(None, remaining) == Group()  # one process: it always goes on


@pytest.mark.parametrize(
    "killed_layout",
    [pytest.param([], id="replicated"), pytest.param(["--sharding", "full"], id="sharded")],
)
def test_a_gang_killed_mid_training_resumes_from_rank_0s_checkpoint(
    tiny_model, texts, tmp_path, killed_layout
) -> None:
    """The whole torchrun gang killed between two checkpoints (a node lost), then run
    again, replicated: it resumes where rank 0's last checkpoint left it and ends where
    one uninterrupted process ends. Checkpoints hold whole tensors keyed by name, so a
    sharded gang's checkpoint resumes replicated too."""
    from modelpress.compress.checkpoints import LATEST

    evaluation, calibration = request(texts)
    long = {**VARIANT, "steps": [VARIANT["steps"][0], {"distill": {
        "steps": 200, "batchSize": 4, "checkpointEvery": 10, "learningRate": 0.001}}]}  # fmt: skip
    single = alone(tiny_model, long, evaluation, calibration, tmp_path)

    out = f"file://{tmp_path}/pair/artifacts/slim/"
    command = pair_command(tiny_model, long, evaluation, calibration, out, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "gang.log"
    with log.open("w") as stderr:
        gang = subprocess.Popen(
            [*command, *killed_layout], env=env, stdout=subprocess.DEVNULL,
            stderr=stderr, start_new_session=True,
        )  # fmt: skip
    wait_for(lambda: bool(list((tmp_path / "ck2").rglob(LATEST))) or gang.poll() is not None)
    assert gang.poll() is None, f"the gang ended before it was killed:\n{log.read_text()[-4000:]}"
    assert kill_process_tree(gang.pid) >= 3, "torchrun and both workers"
    gang.wait()
    assert read_manifest(out) is None, "killed before it could publish"

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    manifest = read_manifest(out)
    assert manifest is not None
    resumed = manifest.metadata["lineage"][1]["details"]
    assert 0 < resumed["resumedFromStep"] < 200
    one = single.metadata["lineage"][1]["details"]
    assert resumed["finalLoss"] == pytest.approx(one["finalLoss"], rel=1e-3)


def kill_process_tree(pid: int) -> int:
    """SIGKILL a process and every descendant, as losing the node or pod would. torchrun
    starts its workers in sessions of their own, so killing its process group alone
    leaves them training (and publishing) as orphans."""
    import psutil

    root = psutil.Process(pid)
    gang = [root, *root.children(recursive=True)]
    for process in gang:
        process.kill()
    _, alive = psutil.wait_procs(gang, timeout=30)
    assert not alive, f"still running after SIGKILL: {alive}"
    return len(gang)


def test_a_gpu_node_trains_each_process_on_its_own_gpu_over_nccl(monkeypatch) -> None:
    """Process LOCAL_RANK of a pod with GPUs trains on GPU LOCAL_RANK, and the gang
    reduces over NCCL; without GPUs it trains on the CPU over gloo."""
    import torch
    import torch.distributed as dist

    from modelpress.compress.distributed import join

    backends: list[str] = []
    chosen: list[str] = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: backends.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 3)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    assert join("full") == Group(3, 4, "cuda:1", "full") and backends == ["nccl"]
    assert chosen == ["cuda:1"]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert join() == Group(3, 4, "cpu") and backends == ["nccl", "gloo"]


def test_more_processes_than_gpus_is_refused_with_the_fix() -> None:
    from modelpress.compress.distributed import training_device

    assert training_device(0, 0) == "cpu" and training_device(7, 8) == "cuda:7"
    with pytest.raises(RuntimeError, match="process 2 of this pod has no GPU of its own"):
        training_device(2, 2)


@pytest.mark.parametrize(
    ("variant", "tolerance"),
    [(VARIANT, 1e-3), (QUANTIZED, 1e-2)],  # sums in another order round a few weights
    ids=["healed", "quantized"],  # the other way, and rounding magnifies that
)
def test_a_sharded_gang_trains_what_one_process_trains(
    variant: dict[str, Any], tolerance: float, tiny_model, texts, tmp_path
) -> None:
    """FSDP over two processes: each keeps half of the student and of its optimizer
    state, and the result is the single process's, within float tolerance; also when
    rank 0 goes on to quantize and tune the scales alone after the training."""
    evaluation, calibration = request(texts)
    single = alone(tiny_model, variant, evaluation, calibration, tmp_path)
    out = f"file://{tmp_path}/pair/artifacts/slim/"
    command = pair_command(tiny_model, variant, evaluation, calibration, out, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [*command, "--sharding", "full"], capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stderr[-4000:]
    manifest = read_manifest(out)
    assert manifest is not None
    lineage = manifest.metadata["lineage"]
    sharded = lineage[1]["details"]
    one = single.metadata["lineage"][1]["details"]
    assert sharded["processes"] == 2 and sharded["sharding"] == "full"
    assert all("processes" not in s.get("details", {}) for s in lineage[2:]), "rank 0 alone"
    assert "distill: training on cpu in fp32, full over 2 processes" in run.stderr
    assert sharded["finalLoss"] == pytest.approx(one["finalLoss"], rel=tolerance)
    assert manifest.metadata["metrics"]["perplexity"] == pytest.approx(
        single.metadata["metrics"]["perplexity"], rel=tolerance
    )


def wait_for(condition, seconds: float = 300) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.02)
