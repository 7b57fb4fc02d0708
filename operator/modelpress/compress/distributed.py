"""Distillation over several processes (GPUs, nodes) with PyTorch's own distributed training.

`modelpress compress` launched by `torchrun` (WORLD_SIZE > 1) joins the process group
torchrun describes. Each process trains on one device: its pod's GPU number
LOCAL_RANK where the pod has GPUs (NCCL between them), else the host's CPU (gloo).
Every rank builds the same student from the same data and takes its share of each
step's batch (a rank's rows are `batch[rank::world]`); gradients are averaged over
the ranks, so each update is the single-process update of the whole batch: the same
training, faster.

Two layouts, the same arithmetic:
- replicate: DistributedDataParallel; every process holds the whole student, its
  gradients and its optimizer state (16 bytes per parameter) and the teacher.
- full: FSDP (`fully_shard`, one unit per decoder block); each process holds its
  1/world share of them, gathering one block at a time as it computes, so a student
  larger than one GPU trains over several. The operator chooses it when replicas do
  not fit (`modelpress.sizing.training`).

Rank 0 alone writes checkpoints and goes on to quantize, evaluate and publish; the
others stop once the last distillation before the chain's quantize step is trained
(`going_on`). A distillation after quantize (scale tuning) trains on rank 0 alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelpress.api.steps import distills_before_quantize
from modelpress.sizing.training import Sharding

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from modelpress.compress.preflight import PlannedStep


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes, and where it trains."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    sharding: Sharding = "replicate"

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def sharded(self) -> bool:
        """Whether parameters and optimizer state are split over the ranks (FSDP)."""
        return self.distributed and self.sharding == "full"

    def shard(self, rows: list[int]) -> list[int]:
        """This rank's rows of a batch."""
        return rows[self.rank :: self.world_size]

    def mean(self, value: float) -> float:
        """The average of `value` over every rank."""
        if not self.distributed:
            return value
        import torch
        import torch.distributed as dist

        # NCCL reduces device tensors only; float64 is exact for any loss we report
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, model: torch.nn.Module) -> Any:
        """The model as it trains: under DistributedDataParallel, or sharded by FSDP (in
        place), when there are ranks."""
        if self.sharded:
            shard_blocks(model)
            return model
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        on_gpu = self.device.startswith("cuda")
        return DistributedDataParallel(model, device_ids=[self.device] if on_gpu else None)


def shard_blocks(model: torch.nn.Module) -> None:
    """FSDP over the ranks, in place: one unit per decoder block and one for the rest
    (embeddings, final norm, head), so at most one block is ever gathered whole."""
    from torch.distributed.fsdp import fully_shard

    from modelpress.compress.architecture import decoder_layers

    for block in decoder_layers(model, purpose="sharded distillation"):
        fully_shard(block)
    fully_shard(model)


def training_device(local_rank: int, gpus: int) -> str:
    """The device a process trains on: its pod's GPU number `local_rank`, else the CPU."""
    if gpus == 0:
        return "cpu"
    if local_rank >= gpus:
        raise RuntimeError(
            f"process {local_rank} of this pod has no GPU of its own: the pod has {gpus}; "
            "start one process per GPU (torchrun --nproc-per-node)"
        )
    return f"cuda:{local_rank}"


def backend_for(device: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.startswith("cuda") else "gloo"


def join(sharding: Sharding = "replicate") -> Group:
    """The process group torchrun set up the environment for, or a group of one; either
    way on this process's device."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = training_device(int(os.environ.get("LOCAL_RANK", "0")), gpus)
    if device != "cpu":
        torch.cuda.set_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Group(device=device, sharding=sharding)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device))
    return Group(dist.get_rank(), dist.get_world_size(), device, sharding)


def leave(group: Group) -> None:
    if group.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def going_on(ranks: Group | None, remaining: Sequence[PlannedStep]) -> Group | None:
    """The ranks that run a chain's `remaining` steps; None: this helper rank is done.
    A gang trains together up to the chain's quantize step, no further: llmcompressor
    quantizes over whatever process group is up, and once quantized the model's tensors
    would wait on ranks that have stopped. So when no distill step remains before a
    quantize step, the helpers stop and rank 0 leaves the group to go on alone."""
    ranks = ranks or Group()
    if distills_before_quantize(planned.action for planned in remaining):
        return ranks
    if not ranks.distributed:
        return ranks
    if not ranks.leader:
        return None
    leave(ranks)
    return Group(device=ranks.device, sharding=ranks.sharding)
