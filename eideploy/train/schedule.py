"""Per-iteration learning rate: linear warm-up from ``init_lr``, then cosine to 0 (spec §7)."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(iteration: int, *, peak: float, init: float, warmup_iters: int,
                  total_iters: int) -> float:
    """Learning rate of ``iteration`` (0-based); the first iteration runs at ``init``.

    Matches torch's LinearLR(init/peak -> 1 over ``warmup_iters``) chained with
    CosineAnnealingLR(T_max = total - warmup, eta_min = 0), stepped once per iteration.
    """
    if warmup_iters > 0 and iteration < warmup_iters:
        return init + (peak - init) * iteration / warmup_iters
    span = max(1, total_iters - warmup_iters)
    progress = min(1.0, (iteration - warmup_iters) / span)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
