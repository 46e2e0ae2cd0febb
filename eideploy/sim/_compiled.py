"""The integer simulator's excitatory step compiled (numba): Eq. 14's division and the LIF in one
pass over a slice, in int64 arithmetic, as the reference functions compute them.

``integer._fused_excitatory`` runs, for a slice with no clamp, ``align`` of the numerator, the
division (``exact``, ``shift``, ``lut:N``, ``lut:N:newton``: ``division.divide``'s integer
steps, the leading one of ``D`` found by a loop instead of the float's exponent field), the bias
and the LIF over time, keeping every intermediate in registers where the numpy pass streams a
dozen ``(T*B, n)`` arrays through memory; it also returns each quantity's extremes for the
saturation tally. ``tests/test_integer_fused.py`` holds the result to the reference functions'
integers in every division mode; without numba the numpy pass runs.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .division import RECIPROCAL_BITS, SQRT2_FRACTION, parse_division, reciprocal_lut

__all__ = ["available", "excitatory"]

_METHODS = {"exact": 0, "shift": 1, "lut": 2}


@functools.cache
def _kernel() -> Any:
    from .._jit import njit, numba

    if numba is None:  # pragma: no cover - exercised only where numba is missing
        return None

    @njit(error_model="numpy")
    def run(i_num, d, has_div, shift, method, bits, newton, table, precision, sqrt2, bias,
            has_bias, log2_tau, theta, steps, q_out, spikes_out, extremes):  # pragma: no cover
        rows, n = i_num.shape
        batch = rows // steps
        q_lo = np.int64(1) << 62
        q_hi = -q_lo
        b_lo, b_hi = q_lo, q_hi
        for r in range(rows):
            for j in range(n):
                x = np.int64(i_num[r, j])
                # align: round half away from zero (shift > 0) or an exact left shift
                if shift > 0:
                    mag = (abs(x) + (np.int64(1) << (shift - 1))) >> shift
                    a = mag if x >= 0 else -mag
                else:
                    a = x << (-shift)
                q = a
                if has_div:
                    den = np.int64(d[r, j])
                    m = abs(a)
                    if method == 0:  # trunc((|N| + D/2) / D): floor((2|N| + D) / (2D))
                        # through float64 (an int64 division costs several times more): both
                        # operands lie below 2**53, so the rounded quotient's floor is off by
                        # at most one, which the remainder corrects (division._floor_divide)
                        top, bottom = 2 * m + den, 2 * den
                        q = np.int64(np.float64(top) / np.float64(bottom))
                        rest = top - q * bottom
                        if rest >= bottom:
                            q += 1
                        elif rest < 0:
                            q -= 1
                    else:
                        k = 0
                        while (den >> (k + 1)) > 0:
                            k += 1
                        frac52 = (den - (np.int64(1) << k)) << (52 - k)  # D = 2**k (1 + f)
                        if method == 1:  # the nearest power of two in log2
                            s = k + (1 if frac52 > sqrt2 else 0)
                            q = (m + ((np.int64(1) << s) >> 1)) >> s
                        else:
                            recip = table[frac52 >> (52 - bits)]
                            if newton:
                                mm = (np.int64(1) << precision) + (frac52 >> (52 - precision))
                                mx = (mm * recip) >> precision
                                recip = (recip * ((np.int64(2) << precision) - mx)) >> precision
                            s = k + precision
                            q = (m * recip + ((np.int64(1) << s) >> 1)) >> s
                    if a < 0:
                        q = -q
                q_lo = min(q_lo, q)
                q_hi = max(q_hi, q)
                if has_bias:
                    q += bias[j]
                b_lo = min(b_lo, q)
                b_hi = max(b_hi, q)
                q_out[r, j] = q
        v_lo = np.int64(1) << 62
        v_hi = -v_lo
        u = np.zeros((batch, n), dtype=np.int64)  # time-major rows: step t is rows t*B..
        for t in range(steps):
            for b in range(batch):
                r = t * batch + b
                for j in range(n):
                    h = u[b, j] + ((-u[b, j]) >> log2_tau) + np.int64(q_out[r, j])
                    v_lo = min(v_lo, h)  # h = decay(u) + I with decay(u) = u - ceil(u / 2**j)
                    v_hi = max(v_hi, h)
                    fired = h >= theta
                    spikes_out[r, j] = 1.0 if fired else 0.0
                    u[b, j] = h - theta if fired else h
        extremes[0], extremes[1], extremes[2], extremes[3] = q_lo, q_hi, b_lo, b_hi
        extremes[4], extremes[5] = v_lo, v_hi

    return run


def available() -> bool:
    """Whether the compiled step can run (numba imports)."""
    return _kernel() is not None


def excitatory(i_num: np.ndarray, d: np.ndarray | None, shift: int, division: str,
               bias: np.ndarray | None, log2_tau: int, theta: int, steps: int
               ) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """``(I_int as float64, spikes as float32, extremes)`` of a slice's ``(T*B, n)`` numerator
    ``i_num`` and divisor ``d`` (None: no division, ``I_int = align(I_num, shift)``): the
    integers of ``align``, ``divide``, the bias and ``lif_multistep``; ``extremes`` are those of
    the quotient, of ``I_int`` and of the membranes ``h``. The caller has checked that nothing
    reaches a width (no clamp is applied here)."""
    method, bits, newton = parse_division(division)
    table = reciprocal_lut(bits) if method == "lut" else np.zeros(1, dtype=np.int64)
    rows, n = i_num.shape
    q = np.empty((rows, n), dtype=np.float64)
    spikes = np.empty((rows, n), dtype=np.float32)
    extremes = np.zeros(6, dtype=np.int64)
    has_bias = bias is not None
    _kernel()(i_num, d if d is not None else i_num, d is not None, int(shift), _METHODS[method],
              int(bits), bool(newton), table, RECIPROCAL_BITS, SQRT2_FRACTION,
              np.asarray(bias if has_bias else np.zeros(n), dtype=np.int64), has_bias,
              int(log2_tau), int(theta), int(steps), q, spikes, extremes)
    return q, spikes, tuple(int(v) for v in extremes)
