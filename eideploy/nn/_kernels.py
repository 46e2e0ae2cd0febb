"""The E-I circuit's element-wise work on CPU in one compiled pass each way (numba).

``functional._EIIntegrate`` spends its time, besides the point-wise W_EI products, in element-wise
passes over ``(N, n_E, L)`` tensors: forward ``I_EE - I_sub``, the quotient, ``g_E / D`` and the
output; backward the sums for ``b_E`` and ``g_E`` and the products ``a = g g_E / D`` and ``a q``.
As separate torch operations each pass streams tensors of several MiB through the caches (VGG-8's
16x16 layer: 8 MiB each); here one sample at a time is read once and finished while it sits in
the core's cache, and the samples run in numba's parallel threads (as many as torch's). The
adaptive stabiliser's zero test stays a torch minimum reduction, which torch vectorises and a
compiled loop (with its NaN rules for ``min``) does not: 0.4 against 3.9 ms on that layer.

The arithmetic is that of the torch path (``tests/test_fused.py`` checks both against the
op-by-op reference to float64 round-off). It is skipped where it does not pay or cannot run: off
CPU, under torch.compile (the caller checks), without numba, for dtypes other than float32 and
float64 and for tensors under :data:`MIN_ELEMENTS`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["MIN_ELEMENTS", "usable", "integrate_forward", "integrate_backward"]

#: Below this many elements of the ``[-I_sub | I_div]`` buffer the torch operations are as fast
#: as the compiled pass and its call (tens of microseconds), so small layers keep them.
MIN_ELEMENTS = 1 << 15

#: Division by zero gives inf (numpy's model) rather than an exception; fused multiply-adds,
#: a reciprocal multiplied (one division per element instead of two) and reductions vectorised
#: in any order: round-off level differences from the torch path. No ``nnan``/``ninf``: the
#: all-zero divisor row (D = +inf) must keep IEEE semantics.
_OPTIONS: dict[str, Any] = {"error_model": "numpy", "parallel": True,
                            "fastmath": {"contract", "arcp", "reassoc", "nsz"}}


@functools.cache
def _compiled() -> tuple[Any, Any] | None:
    """The two kernels, compiled on first use (importing numba costs a fraction of a second that
    ``import eideploy`` should not pay); None without numba."""
    from .._jit import njit, numba

    if numba is None:  # pragma: no cover - exercised only where numba is missing
        return None
    prange = numba.prange

    @njit(**_OPTIONS)
    def forward(both, mixed, g_e, bias, one, shift, out):  # pragma: no cover - compiled
        n_rows, n_e, positions = out.shape
        for n in prange(n_rows):
            for e in range(n_e):
                num, div, i_ee, o = mixed[n, e], mixed[n, n_e + e], both[n, e], out[n, e]
                ge, b = g_e[e], bias[e]
                for p in range(positions):
                    inv = one / (div[p] + shift)
                    q = (i_ee[p] + num[p]) * inv  # (I_EE - I_sub) / D
                    num[p] = q
                    div[p] = ge * inv  # g_E / D
                    o[p] = b + ge * q

    @njit(**_OPTIONS)
    def backward(g, mixed, grad_both, sums):  # pragma: no cover - compiled
        n_rows, n_e, positions = g.shape
        for n in prange(n_rows):
            for e in range(n_e):
                gn, q, ge_over_d, ga = g[n, e], mixed[n, e], mixed[n, n_e + e], grad_both[n, e]
                sum_g = 0.0
                sum_gq = 0.0
                for p in range(positions):
                    gv = gn[p]
                    qv = q[p]
                    a = gv * ge_over_d[p]
                    sum_g += gv
                    sum_gq += gv * qv
                    q[p] = a * qv
                    ge_over_d[p] = a
                    ga[p] = a
                sums[0, n, e] = sum_g
                sums[1, n, e] = sum_gq

    return forward, backward


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the compiled pass runs for these tensors (the first is the ``[-I_sub | I_div]``
    buffer): CPU, one float32/float64 dtype, big enough, numba present. (Eager mode only: the
    caller checks that torch.compile is not tracing.)"""
    mixed = tensors[0]
    dtype = mixed.dtype
    return (mixed.device.type == "cpu" and dtype in (torch.float32, torch.float64)
            and mixed.numel() >= MIN_ELEMENTS
            and all(t.device.type == "cpu" and t.dtype == dtype for t in tensors)
            and _compiled() is not None)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def integrate_forward(both3: torch.Tensor, mixed: torch.Tensor, gain_e: torch.Tensor,
                      bias: torch.Tensor, shift: float) -> torch.Tensor:
    """The forward pass after the W_EI product and the stabiliser: ``mixed = [-I_sub | D]``
    ``(N, 2 n_E, L)`` becomes ``[q | g_E / (D + shift)]`` in place, ``q = (I_EE - I_sub) / (D +
    shift)``; returns ``I_int = g_E q + b_E`` ``(N, n_E, L)``. ``both3`` is the projection
    ``[I_EE | I_IE]`` as ``(N, n_E + n_I, L)``; ``shift`` is the fixed-eps stabiliser's eps (0
    where the adaptive one has already replaced the zeros of D: a test that needs a minimum
    reduction, which torch vectorises and a compiled loop with its NaN rules does not)."""
    forward, _ = _compiled()
    n, two_n_e, positions = mixed.shape
    out = mixed.new_empty((n, two_n_e // 2, positions))
    scalar = np.float32 if mixed.dtype == torch.float32 else np.float64
    with _parallel():
        forward(_array(both3), _array(mixed), _array(gain_e.contiguous()),
                _array(bias.contiguous()), scalar(1.0), scalar(shift), _array(out))
    return out


def integrate_backward(g: torch.Tensor, mixed: torch.Tensor,
                       n_i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward pass before the W_EI products: for the loss gradient ``g`` ``(N, n_E, L)``
    and the saved ``mixed = [q | g_E / D]``, turns ``mixed`` into ``G = [a q | a]`` in place,
    ``a = g g_E / D``. Returns the projection's gradient ``(N, n_E + n_I, L)`` with ``a`` in its
    first n_E channels (the last n_I for the caller's W_EI product), ``dL/db_E = sum g`` and
    ``dL/dg_E = sum g q`` (per channel, in float64 within a sample)."""
    _, backward = _compiled()
    n, n_e, positions = g.shape
    grad_both = g.new_empty((n, n_e + n_i, positions))  # whole, so each row is contiguous
    sums = np.empty((2, n, n_e), dtype=np.float64)
    with _parallel():
        backward(_array(g), _array(mixed), _array(grad_both), sums)
    # Written behind autograd's back (through numpy): mark the saved buffer changed, so that a
    # second backward through the node fails the version check instead of reading G as q.
    torch.autograd.graph.increment_version(mixed)
    total = torch.from_numpy(sums.sum(1)).to(g.dtype)
    return grad_both, total[0], total[1]


@contextlib.contextmanager
def _parallel() -> Iterator[None]:
    """numba's threads as many as torch's, and torch's as they were after the call."""
    from .._jit import set_threads, torch_threads_kept

    with torch_threads_kept():
        set_threads(torch.get_num_threads())
        yield
