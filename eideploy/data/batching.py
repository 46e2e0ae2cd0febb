"""Batches of an in-memory data set, sharded across data-parallel ranks.

Slicing tensors by index is much faster than a per-sample DataLoader for data sets that fit in
memory, and keeps every random choice on one explicit generator, so a run is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from .augment import Augmentation
from .dataset import ArrayDataset, to_float


def batch_indices(
    n: int,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> list[torch.Tensor]:
    """Index batches of this rank for one epoch.

    All ranks draw the same permutation (pass generators seeded identically, e.g. with
    seed + epoch) and take interleaved, disjoint shards of it, like torch's DistributedSampler.
    Every rank must run the same number of steps or the gradient all-reduce deadlocks, so
    without drop_last the permutation is padded by wrapping around to a multiple of world_size
    (a few samples are then seen twice); with drop_last the tail is dropped instead, and so is a
    last incomplete batch.
    """
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    if shuffle:
        # Draw where the generator lives (a CUDA generator cannot drive a CPU randperm).
        draw_on = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(n, generator=generator, device=draw_on).cpu()
    else:
        order = torch.arange(n)
    if drop_last:
        total = (n // world_size) * world_size
        order = order[:total]
    else:
        total = math.ceil(n / world_size) * world_size
        if total > n > 0:
            order = order.repeat(math.ceil(total / n))[:total]
    shard = order[rank:total:world_size]
    batches = list(torch.split(shard, batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def iterate_batches(
    dataset: ArrayDataset,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    augment: Augmentation | None = None,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) on `device`: x float (uint8 images become [0, 1]), y int64.

    uint8 batches cross to the device before the float conversion: a quarter of the bytes to
    copy. `augment(x, generator)` then runs batched on the device; eval transforms
    (`augment.eval_transform`) go through the same argument. The same generator drives both the
    shuffle and the augmentation, so one seed fixes the whole epoch.
    """
    device = torch.device(device)
    non_blocking = device.type == "cuda"
    for idx in batch_indices(
        len(dataset),
        batch_size,
        shuffle=shuffle,
        generator=generator,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
    ):
        x = to_float(dataset.inputs[idx].to(device, non_blocking=non_blocking))
        y = dataset.labels[idx].to(device, non_blocking=non_blocking)
        if augment is not None:
            x = augment(x, generator)
        yield x, y
