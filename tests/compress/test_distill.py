"""Knowledge distillation: the loss, the schedule, learning, and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

import modelpress.compress.distill as distilling
from modelpress.api.steps import DistillStep
from modelpress.compress.checkpoint import load_model
from modelpress.compress.checkpoints import CheckpointStore
from modelpress.compress.distill import (
    batch_indices,
    build_student,
    distill,
    learning_rate,
)
from modelpress.compress.kd_loss import kd_loss


def test_learning_rate_warms_up_then_decays_to_zero():
    rates = [learning_rate(step, 100, 1e-3) for step in range(100)]
    assert rates[0] == pytest.approx(2e-4)
    assert max(rates) == pytest.approx(1e-3)
    assert rates[-1] < 1e-5
    assert learning_rate(0, 1, 1e-3) == pytest.approx(1e-3)


def test_batches_depend_only_on_the_step_and_cover_every_window_each_epoch():
    first_epoch = [i for step in range(5) for i in batch_indices(step, 2, 10)]
    assert sorted(first_epoch) == list(range(10))
    assert batch_indices(7, 2, 10) == batch_indices(7, 2, 10)
    assert [i for step in range(5, 10) for i in batch_indices(step, 2, 10)] != first_epoch


def windows(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (6, 32), generator=torch.Generator().manual_seed(1))


def distance(student, teacher, data) -> float:
    with torch.no_grad():
        return kd_loss(student(input_ids=data).logits, teacher(input_ids=data).logits, 1.0).item()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_distillation_brings_the_student_closer_to_the_teacher(tiny_model, precision):
    teacher = load_model(tiny_model)
    student = build_student(teacher, 2)
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    data = windows(teacher.config.vocab_size)
    before = distance(student, teacher, data)
    step = DistillStep(
        steps=12, batch_size=3, learning_rate=3e-3, temperature=1.0, precision=precision
    )
    details = distill(student, teacher, step, data)
    assert details["trainedTokens"] == 12 * 3 * 32 and details["device"] == "cpu"
    assert details["precision"] == precision
    assert distance(student, teacher.float(), data) < 0.8 * before
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in student.parameters())


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"),
    [(False, False, False), (True, False, True), (False, True, True)],
)
def test_a_cpu_trains_under_bf16_autocast_only_where_it_multiplies_bf16_natively(
    monkeypatch, avx512_bf16, amx, native
):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: not native)
    assert distilling.computes_bf16(torch.device("cpu")) is native
    assert distilling.computes_bf16(torch.device("cuda")) is not native, "as the GPU says"
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert distilling.computes_bf16(torch.device("cpu")) is False, "a torch without the probes"


def test_the_training_precision_can_be_chosen_and_a_wrong_choice_is_named(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setenv(distilling.PRECISION_VARIABLE, "fp32")
    assert not distilling.computes_bf16(cpu) and not distilling.computes_bf16(gpu)
    monkeypatch.setenv(distilling.PRECISION_VARIABLE, "bf16")
    assert distilling.computes_bf16(cpu) and distilling.computes_bf16(gpu)
    monkeypatch.setenv(distilling.PRECISION_VARIABLE, "fp16")
    with pytest.raises(ValueError, match="MODELPRESS_TRAINING_PRECISION='fp16': use auto, fp32"):
        distilling.computes_bf16(cpu)


@pytest.mark.parametrize("environment", ["auto", "fp32", "bf16", "fp16"])
def test_a_steps_precision_wins_over_the_node_and_its_environment(monkeypatch, environment):
    """The same recipe trains the same way on every node, whatever its CPU or variable."""
    monkeypatch.setenv(distilling.PRECISION_VARIABLE, environment)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: environment != "auto")
    for device in (torch.device("cpu"), torch.device("cuda")):
        assert distilling.computes_bf16(device, "bf16") is True
        assert distilling.computes_bf16(device, "fp32") is False


def test_a_wrong_precision_in_a_recipe_is_named_with_the_choices():
    with pytest.raises(ValidationError, match=r"precision[\s\S]*'fp32' or 'bf16'"):
        DistillStep.model_validate({"precision": "fp16"})


class Crash(Exception):
    pass


class CrashingStore(CheckpointStore):
    """Dies right after saving `crash_at`, like a pod evicted mid-training."""

    crash_at = 2

    def save(self, step, write):
        super().save(step, write)
        if step == self.crash_at:
            raise Crash


def as_positional(saved: Path) -> None:
    """Rewrite a checkpoint's optimizer state as earlier versions saved it: torch's own
    `Optimizer.state_dict()`, keyed by position instead of parameter name."""
    named = torch.load(saved, weights_only=True)["optimizer"]
    order = [name for group in named["param_groups"] for name in group["params"]]
    assert all(isinstance(name, str) for name in order) and set(named["state"]) == set(order)
    positional = {
        "state": {order.index(name): value for name, value in named["state"].items()},
        "param_groups": [
            {**group, "params": [order.index(n) for n in group["params"]]}
            for group in named["param_groups"]
        ],
    }
    torch.save({"optimizer": positional}, saved)


@pytest.mark.parametrize("earlier_format", [False, True], ids=["current", "earlier-version"])
def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(
    tiny_model, tmp_path, earlier_format
):
    """Resuming from a checkpoint, also one an earlier version wrote, ends where the
    uninterrupted run ends."""
    from modelpress.compress.distill import FROZEN_FILE, STATE_FILE

    teacher = load_model(tiny_model)
    data = windows(teacher.config.vocab_size)
    step = DistillStep(steps=4, batch_size=2, learning_rate=1e-3, checkpoint_every=2)

    def new_student():  # from the weights as loaded: training moves the teacher to its dtype
        return build_student(load_model(tiny_model), 2)

    straight = new_student()
    distill(straight, teacher, step, data)

    root = str(tmp_path / "ckpt")
    interrupted = new_student()
    crashing = CrashingStore(root, "run", scratch=tmp_path)
    with pytest.raises(Crash):
        distill(interrupted, teacher, step, data, checkpoints=crashing)
    if earlier_format:  # positional optimizer state, no record of the frozen tensors
        as_positional(tmp_path / "ckpt" / "run" / "step-00000002" / STATE_FILE)
        (tmp_path / "ckpt" / "run" / "step-00000002" / FROZEN_FILE).unlink()
    resumed = new_student()  # a new process rebuilds the student from scratch
    details = distill(
        resumed, teacher, step, data, checkpoints=CheckpointStore(root, "run", scratch=tmp_path)
    )
    assert details["resumedFromStep"] == 2
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    # Only the newest checkpoint is kept; a finished run resumes at its end and trains nothing.
    assert sorted(p.name for p in (tmp_path / "ckpt" / "run").iterdir()) == [
        "latest.json",
        "step-00000004",
    ]
    again = distill(
        new_student(),
        teacher,
        step,
        data,
        checkpoints=CheckpointStore(root, "run", scratch=tmp_path),
    )
    assert again["resumedFromStep"] == 4 and again["trainedTokens"] == 0


def test_a_run_resumed_on_a_node_that_chooses_another_precision_says_so(
    tiny_model, tmp_path, monkeypatch
):
    """A step without `precision` interrupted on a node that trains in fp32 goes on in
    bf16 on one that has it; the lineage names both, and the same node names one."""
    teacher = load_model(tiny_model)
    data = windows(teacher.config.vocab_size)
    step = DistillStep(steps=4, batch_size=2, learning_rate=1e-3, checkpoint_every=2)
    root = str(tmp_path / "ckpt")
    monkeypatch.setenv(distilling.PRECISION_VARIABLE, "fp32")
    with pytest.raises(Crash):
        distill(
            build_student(teacher, 2), teacher, step, data,
            checkpoints=CrashingStore(root, "run", scratch=tmp_path),
        )  # fmt: skip
    monkeypatch.setenv(distilling.PRECISION_VARIABLE, "bf16")
    details = distill(
        build_student(load_model(tiny_model), 2), teacher, step, data,
        checkpoints=CheckpointStore(root, "run", scratch=tmp_path),
    )  # fmt: skip
    assert details["resumedFromStep"] == 2
    assert details["precision"] == "bf16" and details["checkpointPrecision"] == "fp32"
    again = distill(
        build_student(load_model(tiny_model), 2), teacher, step, data,
        checkpoints=CheckpointStore(root, "run", scratch=tmp_path),
    )  # fmt: skip
    assert again["resumedFromStep"] == 4 and "checkpointPrecision" not in again


def test_checkpoints_in_a_store_uri(tiny_model, tmp_path, store):
    teacher = load_model(tiny_model)
    data = windows(teacher.config.vocab_size)
    step = DistillStep(steps=2, batch_size=2, checkpoint_every=1)
    checkpoints = CheckpointStore(store + "checkpoints/", "run", scratch=tmp_path / "scratch")
    distill(build_student(teacher, 2), teacher, step, data, checkpoints=checkpoints)
    latest = checkpoints.latest()
    assert latest is not None and latest[0] == 2
    assert (latest[1] / "trainable.safetensors").is_file()
    stored = Path(store.removeprefix("file://")) / "checkpoints" / "run"
    files = {p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file()}
    assert "latest.json" in files and "step-00000002/manifest.json" in files
    assert not any(name.startswith("step-00000001/") for name in files)  # the older one is gone
