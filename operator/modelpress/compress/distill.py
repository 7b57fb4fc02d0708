"""Logit knowledge distillation: the student learns the teacher's next-token distributions.

Loss: forward KL(teacher || student) between the temperature-softened distributions
at every position, scaled by temperature squared so its gradients keep the same
size whatever the temperature (Hinton et al.). The teacher is the base model; the
student is the previous step's result, or, when distillation comes first, the
teacher's evenly spaced layers.

Training runs in fp32: on CPU it is faster than bf16 autocast, and exact. The token
embedding (shared with the output head in tied models) stays frozen: it is most of
a small model's parameters, pruning does not change it, and its gradient would
cost a vocabulary-sized matmul per token. The learning rate warms up linearly,
then decays along a cosine. Batches are a pure function of the step number, so a
resumed run sees exactly the data the interrupted one would have seen.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.api.steps import DistillStep
from modelpress.compress.checkpoints import CheckpointStore
from modelpress.compress.distributed import Group
from modelpress.compress.progress import Progress
from modelpress.compress.prune import remove_layers
from modelpress.sizing.chain import student_layer_indices

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

GRADIENT_CLIP = 1.0
DATA_SEED = 1234
WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "training-state.pt"


def build_student(teacher: torch.nn.Module, student_layers: int) -> torch.nn.Module:
    """A copy of the teacher keeping `student_layers` of its blocks, evenly spaced."""
    from modelpress.compress.architecture import decoder_layers

    total = len(decoder_layers(teacher, purpose="building a student"))
    kept = set(student_layer_indices(total, student_layers))
    student = copy.deepcopy(teacher)
    remove_layers(student, [index for index in range(total) if index not in kept])
    log.info("student: %d of the teacher's %d layers %s", len(kept), total, sorted(kept))
    return student


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over positions of KL(teacher || student) at `temperature`, times temperature squared."""
    import torch.nn.functional as F

    vocab = student_logits.shape[-1]
    student_log_probs = F.log_softmax(
        student_logits.reshape(-1, vocab).float() / temperature, dim=-1
    )
    teacher_log_probs = F.log_softmax(
        teacher_logits.reshape(-1, vocab).float() / temperature, dim=-1
    )
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return kl * temperature**2


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


def trainable_parameters(student: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Freeze the input embedding; everything else learns."""
    for parameter in student.get_input_embeddings().parameters():
        parameter.requires_grad_(False)
    return {name: p for name, p in student.named_parameters() if p.requires_grad}


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
    With `ranks` of several processes, each trains on its share of every batch and the
    gradients are averaged (`modelpress.compress.distributed`); only rank 0 checkpoints."""
    import torch

    ranks = ranks or Group()
    if step.batch_size % ranks.world_size:
        raise ValueError(
            f"batchSize {step.batch_size} does not split over {ranks.world_size} processes: "
            f"use a multiple of {ranks.world_size}"
        )
    student.float().train()
    teacher.float().eval()
    parameters = trainable_parameters(student)
    trained = ranks.wrap(student)
    optimizer = torch.optim.AdamW(parameters.values(), lr=step.learning_rate, weight_decay=0.0)
    start = 0
    if checkpoints is not None and (found := checkpoints.latest()) is not None:
        start, directory = found
        _load_state(parameters, optimizer, directory)
        log.info("distill: resuming at step %d of %d from %s", start, step.steps, directory)
    tokens_per_step = step.batch_size * windows.shape[1]
    progress = Progress("distill", total=step.steps, unit="steps", start=start)
    started = time.monotonic()
    loss_value = float("nan")
    for current in range(start, step.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(current, step.steps, step.learning_rate)
        batch = windows[ranks.shard(batch_indices(current, step.batch_size, len(windows)))]
        with torch.no_grad():
            teacher_logits = teacher(input_ids=batch, use_cache=False).logits
        student_logits = trained(input_ids=batch, use_cache=False).logits
        loss = kd_loss(student_logits, teacher_logits, step.temperature)
        del teacher_logits
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
            if ranks.leader:
                checkpoints.save(current + 1, lambda d: _save_state(parameters, optimizer, d))
            ranks.barrier()  # no rank runs ahead of a checkpoint it could resume from
    student.eval()
    for parameter in student.parameters():
        parameter.requires_grad_(False)
    return {
        "resumedFromStep": start,
        "finalLoss": round(loss_value, 6) if start < step.steps else None,
        "trainedTokens": (step.steps - start) * tokens_per_step,
    }


def _save_state(parameters: dict[str, Any], optimizer: Any, directory: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file(
        {name: p.detach().contiguous() for name, p in parameters.items()}, directory / WEIGHTS_FILE
    )
    torch.save({"optimizer": optimizer.state_dict()}, directory / STATE_FILE)


def _load_state(parameters: dict[str, Any], optimizer: Any, directory: Path) -> None:
    import torch
    from safetensors.torch import load_file

    saved = load_file(directory / WEIGHTS_FILE)
    missing = sorted(set(parameters) - set(saved))
    if missing:
        raise RuntimeError(
            f"checkpoint {directory} lacks {len(missing)} trained tensors (e.g. {missing[0]}); "
            "delete it to train from the start"
        )
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(saved[name])
    state = torch.load(directory / STATE_FILE, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
