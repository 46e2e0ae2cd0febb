"""How many intra-op threads a training run uses: by the work of one step (issue 18, item 3).

torch parallelises each operator over its intra-op threads (OpenMP). An operator too small to
split gains nothing from a second thread and pays for the hand-over; on a machine whose cores are
busy with other jobs it pays far more, since every operator waits at a barrier for a worker the
scheduler has put aside: ``eideploy train models/recipes/digits-mlp.yaml --epochs 2`` on a busy
2-core machine trained in 35.6 s with torch's default 2 threads and in 1.5 s with 1.

The work per step is the forward pass's floating-point operations for one rank's batch, counted
by ``torch.utils.flop_counter`` on one sample (matrix products and convolutions: what threads
split). Below :data:`SMALL_STEP_FLOPS` a run takes 1 thread; at or above it, torch's default
(the machine's cores, or ``OMP_NUM_THREADS``). ``--threads N`` overrides the rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["SMALL_STEP_FLOPS", "ThreadChoice", "choose_threads", "step_flops"]

# Measured with benchmarks/train_threads.py (benchmarks/results/train_threads.md): one training
# step of E-I MLPs and CNNs, 1 thread against 2. Below 0.1 GFLOP of forward work per step the
# second thread changed the step by 0.87-1.29x on 2 idle cores and slowed it 4-100x on a busy
# 2-core machine; from 0.6 GFLOP up it saved 1.5-1.8x on idle cores.
SMALL_STEP_FLOPS = 1.0e8


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count a run uses and the reason, for the training log."""

    threads: int
    reason: str


def step_flops(model: nn.Module, sample: torch.Tensor, batch_size: int) -> int:
    """Forward FLOPs of one training step: one sample's count times ``batch_size``.

    The model runs once in eval mode without gradients (BatchNorm's running statistics stay as
    they are) and the global random state is restored afterwards (a Poisson encoder draws), so
    counting changes nothing that training does next.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), \
                FlopCounterMode(display=False) as counter:
            model(sample)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) * int(batch_size)


def choose_threads(flops: float | None, *, available: int, requested: int | None = None,
                   device: str = "cpu") -> ThreadChoice:
    """The rule: ``requested`` when given; torch's default (``available``) off the CPU or for a
    step of at least :data:`SMALL_STEP_FLOPS`; else 1."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads {requested}: give a thread count of at least 1")
        return ThreadChoice(requested, "set by --threads")
    if device != "cpu" or flops is None:
        return ThreadChoice(available, f"torch's default; the {device} device does the work")
    gflop = flops / 1e9
    if flops < SMALL_STEP_FLOPS:
        return ThreadChoice(1, f"{gflop:.3g} GFLOP forward per step < {SMALL_STEP_FLOPS / 1e9:g}: "
                               "too small to split; --threads N overrides")
    return ThreadChoice(available, f"{gflop:.3g} GFLOP forward per step >= "
                                   f"{SMALL_STEP_FLOPS / 1e9:g}: torch's default; "
                                   "--threads N overrides")
