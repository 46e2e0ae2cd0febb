"""Division without a divider: ``round(N / D)`` on integer numpy arrays (spec/dynapse2.md §5).

Eq. 14's divisive inhibition needs ``N / D`` for a signed dividend ``N`` and a positive divisor
``D`` (``D >= 1``, guaranteed by the divisor floor, docs/integer-semantics.md §5). Three methods,
all vectorised over int64 arrays, all rounding the magnitude half away from zero and restoring
the sign (so ``divide(-N, D) == -divide(N, D)``):

* ``exact``: integer division, the reference: ``sign(N) * floor((2|N| + D) / (2D))``;
  error <= 1/2 LSB of the quotient.
* ``lut:n`` (``lut:n:newton``): a reciprocal of ``D`` from a table of ``2**n`` entries indexed by
  the ``n`` mantissa bits after the leading one (leading-zero normalisation ``D = 2**k m``,
  ``1 <= m < 2``), each entry ``round(2**P / m_mid)`` at the midpoint ``m_mid`` of its interval;
  optionally one Newton-Raphson step ``x <- x (2 - m x)``. Then ``|N| * recip`` is shifted
  right by ``P + k`` with rounding. Relative error of the reciprocal <= :func:`lut_bound`.
* ``shift``: divide by the nearest power of two ``2**round(log2 D)`` (rounding in the log
  domain: ``k + 1`` when ``D**2 >= 2**(2k+1)``); relative error of ``1/D`` in ``[-29.3%,
  +41.4%]``.

``lut_bound(n, newton)`` and ``SHIFT_BOUNDS`` are the documented bounds the tests check.
"""

from __future__ import annotations

import numpy as np

__all__ = ["divide", "reciprocal_lut", "lut_reciprocal", "lut_bound", "parse_division",
           "bit_length", "RECIPROCAL_BITS", "DIVISOR_BITS", "SHIFT_BOUNDS", "MODES"]

#: Fractional bits ``P`` of the table's reciprocals: entries ``round(2**P / m_mid)`` lie in
#: ``(2**(P-1), 2**P]``, so one entry is ``P + 1`` bits (17 for P = 16).
RECIPROCAL_BITS = 16
#: Widest divisor the methods accept (unsigned): ``1 <= D < 2**DIVISOR_BITS``.
DIVISOR_BITS = 31
#: ``shift``'s relative error of ``1/D``: ``2**k / D - 1`` lies in ``[1/sqrt2 - 1, sqrt2 - 1]``.
SHIFT_BOUNDS = (2 ** -0.5 - 1.0, 2 ** 0.5 - 1.0)
MODES = ("exact", "lut", "shift")


def parse_division(division: str) -> tuple[str, int, bool]:
    """``"exact"`` / ``"shift"`` / ``"lut:N"`` / ``"lut:N:newton"`` -> ``(method, N, newton)``."""
    parts = division.split(":")
    if parts[0] in ("exact", "shift") and len(parts) == 1:
        return parts[0], 0, False
    if parts[0] == "lut" and len(parts) in (2, 3) and parts[1].isdigit():
        bits = int(parts[1])
        newton = len(parts) == 3
        if 1 <= bits <= 14 and (not newton or parts[2] == "newton"):
            return "lut", bits, newton
    raise ValueError(f"division {division!r}: use 'exact', 'shift', 'lut:N' (1 <= N <= 14) or "
                     "'lut:N:newton'")


def bit_length(d: np.ndarray) -> np.ndarray:
    """``floor(log2 d) + 1`` for positive int64 ``d``, exactly (no float rounding at 2**k - 1)."""
    d = np.asarray(d, dtype=np.int64)
    k = np.zeros(d.shape, dtype=np.int64)
    rest = d.copy()
    for step in (32, 16, 8, 4, 2, 1):  # a leading-zero count by binary search, as hardware does
        big = rest >= (np.int64(1) << step)
        k += np.where(big, step, 0)
        rest = np.where(big, rest >> step, rest)
    return k + (rest > 0)


def reciprocal_lut(bits: int, precision: int = RECIPROCAL_BITS) -> np.ndarray:
    """The table: entry ``i`` is ``round(2**P / (1 + (i + 1/2) / 2**n))`` (midpoint), int64."""
    i = np.arange(1 << bits, dtype=np.int64)
    # exact rational rounding: 2**P * 2**(n+1) / (2**(n+1) + 2i + 1), half away from zero
    den = (np.int64(1) << (bits + 1)) + 2 * i + 1
    num = np.int64(1) << (precision + bits + 1)
    return (2 * num + den) // (2 * den)


def lut_bound(bits: int, newton: bool = False, precision: int = RECIPROCAL_BITS) -> float:
    """Bound on the relative error ``|recip * D / 2**(P+k) - 1|`` of :func:`lut_reciprocal`.

    Midpoint entries: ``|m / m_mid - 1| <= 2**-(n+1)`` (half an interval over ``m_mid >= 1``);
    the entry's rounding adds ``<= 2**-P`` relatively. One Newton step squares the relative
    error ``e`` (``1 - m x1 = (1 - m x0)**2``) and adds the truncations of its two products,
    ``<= 3 * 2**-P``.
    """
    e = 2.0 ** -(bits + 1) + 2.0 ** -precision + 2.0 ** -(bits + 1 + precision)
    return e * e + 3 * 2.0 ** -precision if newton else e


def lut_reciprocal(d: np.ndarray, bits: int, newton: bool = False,
                   precision: int = RECIPROCAL_BITS) -> tuple[np.ndarray, np.ndarray]:
    """``(recip, shift)`` with ``1/d ~ recip / 2**shift``: ``recip`` in ``(2**(P-1), 2**P]``."""
    d = np.asarray(d, dtype=np.int64)
    k = bit_length(d) - 1  # d = 2**k m, 1 <= m < 2
    # the n bits after the leading one; for k < n the low bits are zeros (left shift first)
    index = np.where(k >= bits, d >> np.maximum(k - bits, 0),
                     d << np.maximum(bits - k, 0)) - (np.int64(1) << bits)
    recip = reciprocal_lut(bits, precision)[index]
    if newton:
        # m in Q.P (truncated to P fractional bits), then x1 = x0 (2 - m x0) in Q.P
        m = np.where(k >= precision, d >> np.maximum(k - precision, 0),
                     d << np.maximum(precision - k, 0))
        mx = (m * recip) >> precision
        recip = (recip * ((np.int64(2) << precision) - mx)) >> precision
    return recip, k + precision


def _round_shift(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``round(x / 2**shift)`` half away from zero for ``x >= 0``, ``shift >= 0``."""
    half = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
    return (x + half) >> shift


def divide(n: np.ndarray, d: np.ndarray, method: str = "exact") -> np.ndarray:
    """``N / D`` rounded half away from zero, by ``method`` (module doc); int64 arrays,
    broadcast. ``D`` must lie in ``[1, 2**DIVISOR_BITS)``; ``|N| * recip`` must fit in 63 bits
    (``|N| < 2**(62 - P)`` for ``lut``), which the simulator's widths guarantee."""
    n = np.asarray(n, dtype=np.int64)
    d = np.asarray(d, dtype=np.int64)
    if d.size and (d.min() < 1 or d.max() >= (np.int64(1) << DIVISOR_BITS)):
        raise ValueError(f"divisor out of [1, 2**{DIVISOR_BITS}): min {d.min()}, max {d.max()}")
    method_name, bits, newton = parse_division(method)
    magnitude, sign = np.abs(n), np.where(n < 0, -1, 1)
    if method_name == "exact":
        q = (2 * magnitude + d) // (2 * d)
    elif method_name == "shift":
        k = bit_length(d) - 1
        k = k + (d * d >= (np.int64(1) << (2 * k + 1)))  # nearest power of two in log2
        q = _round_shift(magnitude, k)
    else:
        recip, shift = lut_reciprocal(d, bits, newton)
        q = _round_shift(magnitude * recip, shift)
    return sign * q
