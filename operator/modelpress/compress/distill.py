"""Logit knowledge distillation: the student learns the teacher's next-token distributions.

Loss: forward KL(teacher || student) between the temperature-softened distributions
at every position, scaled by temperature squared (`compress.kd_loss`). The teacher is
the base model; the student is the previous step's result, or, when distillation
comes first, the teacher's evenly spaced layers.

Training runs on the pod's GPU when it has one, else on its CPU: fp32 weights under
bf16 autocast with a bf16 teacher, or in fp32, as the step's `precision` says; unset,
bf16 where the device computes bf16 natively (a GPU that has it, a CPU with
AVX512-BF16 or AMX), else fp32, faster where bf16 is emulated. The token
embedding (shared with the output head in tied models) stays frozen: it is most of
a small model's parameters, pruning does not change it, and its gradient would
cost a vocabulary-sized matmul per token. The learning rate warms up linearly,
then decays along a cosine. Batches are a pure function of the step number, so a
resumed run sees exactly the data the interrupted one would have seen.
After a quantize step the student is quantized: only its scales and norm weights
train (`compress.scale_tuning`), replicated.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.api.steps import DistillStep
from modelpress.compress.checkpoints import CheckpointStore
from modelpress.compress.distributed import Group, shard_blocks
from modelpress.compress.kd_loss import kd_loss
from modelpress.compress.progress import Progress
from modelpress.compress.prune import remove_layers
from modelpress.compress.scale_tuning import is_quantized
from modelpress.compress.scale_tuning import trainable as scales_and_norms_only
from modelpress.sizing.chain import student_layer_indices

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

GRADIENT_CLIP = 1.0
DATA_SEED = 1234
WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "training-state.pt"
#: The digest of the tensors that did not train, which the checkpoint's trained ones fit,
#: and the precision they trained in.
FROZEN_FILE = "frozen.json"
#: Chooses the training precision of steps that leave `precision` unset
#: (`computes_bf16`): auto, fp32 or bf16.
PRECISION_VARIABLE = "MODELPRESS_TRAINING_PRECISION"


def build_student(teacher: torch.nn.Module, student_layers: int) -> torch.nn.Module:
    """A copy of the teacher keeping `student_layers` of its blocks, evenly spaced."""
    from modelpress.compress.architecture import decoder_layers

    total = len(decoder_layers(teacher, purpose="building a student"))
    kept = set(student_layer_indices(total, student_layers))
    student = copy.deepcopy(teacher)
    remove_layers(student, [index for index in range(total) if index not in kept])
    log.info("student: %d of the teacher's %d layers %s", len(kept), total, sorted(kept))
    return student


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first 5 % of steps (at least one), then cosine decay to zero."""
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def batch_indices(step: int, batch_size: int, pool: int, seed: int = DATA_SEED) -> list[int]:
    """Window indices of the batch at `step`: each epoch a fresh permutation of the pool."""
    import torch

    indices = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, pool)
        generator = torch.Generator().manual_seed(seed + epoch)
        indices.append(int(torch.randperm(pool, generator=generator)[offset]))
    return indices


def freeze_embedding(student: torch.nn.Module) -> None:
    """The input embedding stays as it is; everything else learns."""
    for parameter in student.get_input_embeddings().parameters():
        parameter.requires_grad_(False)


def distill(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    step: DistillStep,
    windows: torch.Tensor,
    *,
    checkpoints: CheckpointStore | None = None,
    ranks: Group | None = None,
) -> dict[str, Any]:
    """Train `student` in place toward `teacher` on `windows`; returns numbers for the lineage.
    Training runs on the ranks' device (a GPU where the pod has one) and `student` is
    back in host memory, in fp32, when it returns. With `ranks` of several processes,
    each trains on its share of every batch and the gradients are averaged
    (`modelpress.compress.distributed`); only rank 0 checkpoints."""
    import torch

    ranks = ranks or Group()
    if step.batch_size % ranks.world_size:
        raise ValueError(
            f"batchSize {step.batch_size} does not split over {ranks.world_size} processes: "
            f"use a multiple of {ranks.world_size}"
        )
    device = torch.device(ranks.device)
    bf16 = computes_bf16(device, step.precision)
    student.float()
    working = _place_teacher_and_student(teacher, student, ranks, bf16)
    working.train()
    trained = ranks.wrap(working)  # FSDP replaces the parameters: name them after this
    log.info(
        "distill: training on %s in %s, %s",
        ranks.device,
        "bf16 autocast" if bf16 else "fp32",
        f"{ranks.sharding} over {ranks.world_size} processes" if ranks.distributed else "alone",
    )
    parameters = {n: p for n, p in working.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(parameters.values(), lr=step.learning_rate, weight_decay=0.0)
    # what the checkpoints' trained tensors fit; hashing it costs a pass over the model
    frozen = frozen_digest(student, set(parameters)) if checkpoints is not None else ""
    precision = "bf16" if bf16 else "fp32"
    start, discarded, earlier_precision = 0, None, None
    if checkpoints is not None and (found := checkpoints.latest()) is not None:
        if ranks.mean(float(_fits(found[1], frozen))) == 1.0:
            start, directory = found
            _load_state(working, optimizer, list(parameters), directory)
            log.info("distill: resuming at step %d of %d from %s", start, step.steps, directory)
            earlier_precision = _recorded_precision(directory, precision)
        else:
            discarded = found[0]
            log.warning(
                "distill: the checkpoint at step %d trained against other frozen weights than "
                "this run has (the step before gave another result here): training from the "
                "start",
                discarded,
            )
    tokens_per_step = step.batch_size * windows.shape[1]
    progress = Progress("distill", total=step.steps, unit="steps", start=start)
    started = time.monotonic()
    loss_value = float("nan")
    for current in range(start, step.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(current, step.steps, step.learning_rate)
        rows = ranks.shard(batch_indices(current, step.batch_size, len(windows)))
        batch = windows[rows].to(device)
        with torch.no_grad():
            teacher_logits = teacher(input_ids=batch, use_cache=False).logits
        with _autocast(device, bf16):
            student_logits = trained(input_ids=batch, use_cache=False).logits
        loss = kd_loss(student_logits, teacher_logits, step.temperature)
        del teacher_logits, student_logits  # the loss holds its gradient, not these
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters.values(), GRADIENT_CLIP)
        optimizer.step()
        loss_value = ranks.mean(loss.item())
        done = current + 1 - start
        rate = done * tokens_per_step / max(time.monotonic() - started, 1e-9)
        progress.advance(1, loss=f"{loss_value:.4f}", **{"tokens/s": f"{rate:.0f}"})
        finished = current + 1 == step.steps
        due = (current + 1) % step.checkpoint_every == 0 or finished
        if checkpoints is not None and due:
            state = _training_state(working, optimizer, parameters)  # every rank: a gather
            if ranks.leader:
                save = functools.partial(_save_state, state, frozen, precision)
                checkpoints.save(current + 1, save)
            ranks.barrier()  # no rank runs ahead of a checkpoint it could resume from
    _bring_home(student, working, ranks)
    return {
        "resumedFromStep": start,
        **({"discardedCheckpointStep": discarded} if discarded is not None else {}),
        **({"checkpointPrecision": earlier_precision} if earlier_precision else {}),
        "finalLoss": round(loss_value, 6) if start < step.steps else None,
        "trainedTokens": (step.steps - start) * tokens_per_step,
        "device": device.type,
        "precision": precision,
    }


def _place_teacher_and_student(
    teacher: torch.nn.Module, student: torch.nn.Module, ranks: Group, bf16: bool
) -> torch.nn.Module:
    """Move both onto the training device; returns the module that trains. The teacher
    only runs forward: in bf16 when training runs in bf16 (half the memory), else in
    fp32 (exact). Sharded, both are split over the ranks and the student trains as a
    copy, gathered back into `student` at the end."""
    import torch

    teacher.eval()
    teacher.requires_grad_(False)
    teacher.to(dtype=torch.bfloat16 if bf16 else torch.float32)
    if is_quantized(student):
        if ranks.sharded:
            raise ValueError("distillation after quantization trains replicated, not sharded")
        scales_and_norms_only(student)
    else:
        student.requires_grad_(True)  # an earlier step, or a teacher it was copied from, froze it
        freeze_embedding(student)
    if not ranks.sharded:
        teacher.to(ranks.device)
        return student.to(ranks.device)
    shard_blocks(teacher)  # onto the device one block at a time, never the whole model
    return copy.deepcopy(student)  # ranks.wrap shards it onto the device


def computes_bf16(device: torch.device, requested: str | None = None) -> bool:
    """Whether training on `device` runs under bf16 autocast: as `requested` (a step's
    `precision`) says; unset, as PRECISION_VARIABLE says; `auto` or unset, where the
    device multiplies bf16 natively (a GPU that has it, or a CPU with AVX512-BF16 or
    AMX). Elsewhere bf16 is emulated and slower than fp32: a
    scale-tuning step of the local example ran 2.4x faster in fp32 than under bf16
    autocast on a CPU without them, and 1.6x faster under bf16 autocast than in fp32 on
    one with AVX512-BF16 (benchmarks/distill_step.py)."""
    import torch

    if requested is not None:
        return requested == "bf16"
    chosen = os.environ.get(PRECISION_VARIABLE, "auto")
    if chosen not in ("auto", "fp32", "bf16"):
        raise ValueError(f"{PRECISION_VARIABLE}={chosen!r}: use auto, fp32 or bf16")
    if chosen != "auto":
        return chosen == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return device.type == "cpu" and any(getattr(torch.cpu, probe, bool)() for probe in probes)


def _autocast(device: torch.device, bf16: bool) -> Any:
    """bf16 autocast over the fp32 weights, or nothing (fp32)."""
    import contextlib

    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _bring_home(student: torch.nn.Module, working: torch.nn.Module, ranks: Group) -> None:
    """Leave the trained weights in `student`, in host memory, frozen. Sharded, every rank
    gathers each tensor in turn (a later distill step may train again on all of them)."""
    import torch
    from torch.distributed.tensor import DTensor

    if working is not student:
        with torch.no_grad():
            home = dict(student.named_parameters())
            for name, parameter in working.named_parameters():
                value = parameter.full_tensor() if isinstance(parameter, DTensor) else parameter
                home[name].copy_(value.to("cpu", home[name].dtype))
        del working
    student.to("cpu")
    student.eval()
    student.requires_grad_(False)


def _training_state(
    model: torch.nn.Module, optimizer: Any, parameters: dict[str, Any]
) -> dict[str, Any]:
    """The trained tensors and the optimizer state, whole and keyed by name, in host memory
    on rank 0 (a collective: every rank calls it). One format, however the run was laid
    out, so a checkpoint resumes replicated or sharded, on any number of processes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights, optimizer_state = get_state_dict(model, optimizer, options=options)
    return {
        "weights": {name: t for name, t in weights.items() if name in parameters},
        "optimizer": optimizer_state,
    }


def frozen_digest(model: torch.nn.Module, trained: set[str]) -> str:
    """sha256 of every tensor that does not train: what a checkpoint's trained tensors were
    fitted to. A quantized student's integer weights and scales come from a quantize step
    run again on resume; on other hardware it may choose other codes, and gains tuned for
    the old ones must not be applied to them."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name in trained:
            continue
        host = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{host.dtype}:{tuple(host.shape)}\n".encode())
        digest.update(host.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _fits(directory: Path, frozen: str) -> bool:
    """Whether the checkpoint was trained against these frozen tensors. Checkpoints of
    earlier versions did not record them and are trusted as before; an unreadable record
    is not trusted."""
    record = directory / FROZEN_FILE
    if not record.is_file():
        return True
    try:
        return json.loads(record.read_text()).get("sha256") == frozen
    except (ValueError, AttributeError):
        return False


def _recorded_precision(directory: Path, precision: str) -> str | None:
    """The precision the checkpoint's steps trained in, when it is not `precision` (a step
    that leaves it unset, resumed on a node that chooses otherwise); the run goes on in
    its own, and the lineage says both."""
    try:
        recorded = json.loads((directory / FROZEN_FILE).read_text()).get("precision")
    except (OSError, ValueError, AttributeError):
        return None  # checkpoints of earlier versions did not record it
    if recorded is None or recorded == precision:
        return None
    log.warning(
        "distill: the checkpoint's steps trained in %s; this node trains the rest in %s "
        "(set the step's precision for one throughout)",
        recorded,
        precision,
    )
    return str(recorded)


def _save_state(state: dict[str, Any], frozen: str, precision: str, directory: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({n: t.contiguous() for n, t in state["weights"].items()}, directory / WEIGHTS_FILE)
    torch.save({"optimizer": state["optimizer"]}, directory / STATE_FILE)
    (directory / FROZEN_FILE).write_text(json.dumps({"sha256": frozen, "precision": precision}))


def _load_state(model: Any, optimizer: Any, names: list[str], directory: Path) -> None:
    """Load a checkpoint into the (possibly sharded) model and its optimizer."""
    import torch
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    saved: dict[str, Any] = load_file(directory / WEIGHTS_FILE)
    missing = sorted(set(names) - set(saved))
    if missing:
        raise RuntimeError(
            f"checkpoint {directory} lacks {len(missing)} trained tensors (e.g. {missing[0]}); "
            "delete it to train from the start"
        )
    state = torch.load(directory / STATE_FILE, weights_only=True)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=saved,
        optim_state_dict=named_optimizer_state(state["optimizer"], names),
        options=StateDictOptions(full_state_dict=True, strict=False),
    )


def named_optimizer_state(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Optimizer state keyed by parameter name. Checkpoints of earlier versions keyed it by
    position in `names` (torch's own `Optimizer.state_dict`); they resume unchanged."""
    if all(isinstance(n, str) for group in state["param_groups"] for n in group["params"]):
        return state
    return {
        "state": {names[index]: value for index, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [names[index] for index in group["params"]]}
            for group in state["param_groups"]
        ],
    }
