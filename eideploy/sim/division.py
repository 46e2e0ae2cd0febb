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

import functools
import math

import numpy as np

__all__ = ["divide", "reciprocal_lut", "lut_reciprocal", "lut_bound", "parse_division",
           "bit_length", "normalise", "RECIPROCAL_BITS", "DIVISOR_BITS", "SHIFT_BOUNDS", "MODES",
           "SQRT2_FRACTION"]

#: Fractional bits ``P`` of the table's reciprocals: entries ``round(2**P / m_mid)`` lie in
#: ``(2**(P-1), 2**P]``, so one entry is ``P + 1`` bits (17 for P = 16).
RECIPROCAL_BITS = 16
#: Widest divisor the methods accept (unsigned): ``1 <= D < 2**DIVISOR_BITS``.
DIVISOR_BITS = 31
#: ``shift``'s relative error of ``1/D``: ``2**k / D - 1`` lies in ``[1/sqrt2 - 1, sqrt2 - 1]``.
SHIFT_BOUNDS = (2 ** -0.5 - 1.0, 2 ** 0.5 - 1.0)
MODES = ("exact", "lut", "shift")
#: Elements per chunk of :func:`divide` (its temporaries then fit in a core's cache).
CHUNK = 1 << 16


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


#: Bits of an IEEE float64's fraction field.
_FRACTION_BITS = 52
_FRACTION_MASK = (1 << _FRACTION_BITS) - 1
#: ``floor((sqrt 2 - 1) 2**52)``, exactly (integer square root): a fraction field above it means
#: a mantissa above sqrt 2 (never equal: sqrt 2 is irrational).
SQRT2_FRACTION = math.isqrt(2 << (2 * _FRACTION_BITS)) - (1 << _FRACTION_BITS)


def normalise(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leading-zero normalisation ``d = 2**k (1 + f / 2**52)`` of positive int64 ``d < 2**53``:
    ``(k, f)`` exactly. A float64 holds every such integer without rounding, so its exponent
    field is ``k`` and its fraction field ``f`` is ``d``'s bits after the leading one, shifted
    to the top (the bits a hardware leading-zero counter and barrel shifter give)."""
    bits = np.asarray(d, dtype=np.int64).astype(np.float64).view(np.int64)
    return (bits >> _FRACTION_BITS) - 1023, bits & _FRACTION_MASK


def bit_length(d: np.ndarray, *, check: bool = True) -> np.ndarray:
    """``floor(log2 d) + 1`` for positive int64 ``d < 2**53``, exactly (:func:`normalise`)."""
    d = np.asarray(d, dtype=np.int64)
    if check and d.size and (d.min() < 1 or d.max() >= (np.int64(1) << 53)):
        raise ValueError("bit_length: values must lie in [1, 2**53)")
    return normalise(d)[0] + 1


@functools.lru_cache(maxsize=64)
def reciprocal_lut(bits: int, precision: int = RECIPROCAL_BITS) -> np.ndarray:
    """The table: entry ``i`` is ``round(2**P / (1 + (i + 1/2) / 2**n))`` (midpoint), int64
    (read-only: one table per ``(n, P)``, built once)."""
    i = np.arange(1 << bits, dtype=np.int64)
    # exact rational rounding: 2**P * 2**(n+1) / (2**(n+1) + 2i + 1), half away from zero
    den = (np.int64(1) << (bits + 1)) + 2 * i + 1
    num = np.int64(1) << (precision + bits + 1)
    table = (2 * num + den) // (2 * den)
    table.flags.writeable = False
    return table


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
    k, fraction = normalise(d)  # d = 2**k m, 1 <= m < 2 (callers keep d in [1, 2**31))
    # the n bits after the leading one (zeros below d's last bit when k < n)
    index = fraction >> (_FRACTION_BITS - bits)
    recip = np.take(reciprocal_lut(bits, precision), index)
    if newton:
        # m in Q.P (truncated to P fractional bits), then x1 = x0 (2 - m x0) in Q.P
        m = (np.int64(1) << precision) + (fraction >> (_FRACTION_BITS - precision))
        mx = (m * recip) >> precision
        recip = (recip * ((np.int64(2) << precision) - mx)) >> precision
    return recip, k + precision


def _round_shift(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``round(x / 2**shift)`` half away from zero for ``x >= 0``, ``shift >= 0``."""
    return (x + ((np.int64(1) << shift) >> 1)) >> shift  # half is 0 for shift 0


def divide(n: np.ndarray, d: np.ndarray, method: str = "exact", *, check: bool = True
           ) -> np.ndarray:
    """``N / D`` rounded half away from zero, by ``method`` (module doc); int64 arrays,
    broadcast. ``D`` must lie in ``[1, 2**DIVISOR_BITS)`` (checked unless ``check`` is False:
    for callers that clamp ``D`` themselves); ``|N| * recip`` must fit in 63 bits
    (``|N| < 2**(62 - P)`` for ``lut``), which the simulator's widths guarantee.

    Large arrays are divided in chunks of ``CHUNK`` elements: the same values, computed while
    the temporaries stay in the processor's cache (3-4x faster than whole-array passes)."""
    n = np.asarray(n, dtype=np.int64)
    d = np.asarray(d, dtype=np.int64)
    if check and d.size and (d.min() < 1 or d.max() >= (np.int64(1) << DIVISOR_BITS)):
        raise ValueError(f"divisor out of [1, 2**{DIVISOR_BITS}): min {d.min()}, max {d.max()}")
    parsed = parse_division(method)
    n, d = np.broadcast_arrays(n, d)
    if n.size <= CHUNK:
        return _divide(n, d, *parsed)
    out = np.empty(n.shape, dtype=np.int64)
    flat_n, flat_d, flat_out = n.reshape(-1), d.reshape(-1), out.reshape(-1)
    for start in range(0, flat_n.size, CHUNK):
        part = slice(start, start + CHUNK)
        flat_out[part] = _divide(flat_n[part], flat_d[part], *parsed)
    return out


def _floor_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a // b`` for int64 ``0 <= a < 2**53``, ``1 <= b < 2**53``, through float64 (int64
    division has no vector instruction; this is 3-4x faster). ``a / b`` rounded to float64 is
    within ``2**-53`` relatively of the quotient, which is below ``2**53``, so its floor is off by
    at most one either way; the integer remainder ``a - q b`` tells which and corrects it.
    Larger operands (only a direct caller's: the simulator's stay below ``2**48``) take ``//``."""
    limit = 1 << 53
    if a.size and (int(a.max()) >= limit or int(b.max()) >= limit):
        return a // b
    q = np.floor(a.astype(np.float64) / b).astype(np.int64)
    r = a - q * b
    return q + (r >= b) - (r < 0)


def _divide(n: np.ndarray, d: np.ndarray, method_name: str, bits: int, newton: bool
            ) -> np.ndarray:
    magnitude = np.abs(n)
    if method_name == "exact":
        q = _floor_divide(2 * magnitude + d, 2 * d)
    elif method_name == "shift":
        k, fraction = normalise(d)
        k = k + (fraction > SQRT2_FRACTION)  # nearest power of two in log2: m >= sqrt 2
        q = _round_shift(magnitude, k)
    else:
        recip, shift = lut_reciprocal(d, bits, newton)
        q = _round_shift(magnitude * recip, shift)
    sign = n >> 63  # -1 where n < 0, else 0: (q ^ -1) + 1 == -q restores the sign
    return (q ^ sign) - sign
