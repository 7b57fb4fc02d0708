"""Distillation over several processes (GPUs, nodes) with PyTorch's own data parallelism.

`modelpress compress` launched by `torchrun` (WORLD_SIZE > 1) joins the process group
torchrun describes, over gloo: the model trains in host memory, where it is loaded,
so on GPU nodes too (NCCL reduces CUDA tensors only). Every rank builds the same student
from the same data, takes its share of each step's batch (a rank's rows are
`batch[rank::world]`), and DistributedDataParallel averages the gradients, so each
update is the single-process update of the whole batch: the same training, faster.
Rank 0 alone writes checkpoints and goes on to quantize, evaluate and publish; the
others stop once the last distillation step is trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


#: The process group's backend for distillation: gradients live in host memory.
TRAINING_BACKEND = "gloo"


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, rows: list[int]) -> list[int]:
        """This rank's rows of a batch."""
        return rows[self.rank :: self.world_size]

    def mean(self, value: float) -> float:
        """The average of `value` over every rank."""
        if not self.distributed:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, model: torch.nn.Module) -> Any:
        """The model as it trains: under DistributedDataParallel when there are ranks."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)


def join() -> Group:
    """The process group torchrun set up the environment for, or a group of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Group()
    import torch.distributed as dist

    if not dist.is_initialized():
        # gloo, also on GPU nodes: the engine trains where the model is loaded, in host
        # memory, and NCCL reduces CUDA tensors only (DDP over it fails on CPU ones).
        dist.init_process_group(backend=TRAINING_BACKEND)
    return Group(rank=dist.get_rank(), world_size=dist.get_world_size())


def leave(group: Group) -> None:
    if group.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
