"""Many-GPU training with torchrun: process group from the environment, DDP, rank-0 E-I Init."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistContext", "setup_distributed", "broadcast_module_", "all_reduce_sum"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistContext:
    """Join the process group torchrun describes in WORLD_SIZE/RANK/LOCAL_RANK (else 1 process).

    NCCL on CUDA, gloo on CPU (the CPU path is what the tests exercise with two processes).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank)


@torch.no_grad()
def broadcast_module_(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers (E-I Init's result) to every rank."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.dtype == torch.bool:  # gloo has no bool broadcast
            carrier = tensor.data.to(torch.uint8)
            dist.broadcast(carrier, src)
            tensor.data.copy_(carrier.bool())
        else:
            dist.broadcast(tensor.data, src)


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
