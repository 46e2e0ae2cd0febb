"""Per-core weight codebooks for DYNAP-SE2: 4 base currents, a 4-bit mask per synapse.

A DYNAP-SE2 core has four base weight currents ``SYAM_W0..W3`` shared by all its neurons and all
dendrite types; each CAM entry (one synapse) holds a 4-bit mask, and the synapse's weight is the
sum of the selected bases (spec §1, §3.4). So a core can express 16 levels: 0 (mask 0) and up to
15 non-zero subset sums. Quantizing a core means choosing the bases and a mask per synapse.

Objective: for the non-negative weights ``w_i`` of one core (all kinds together, the sign is the
dendrite type), choose bases ``b >= 0`` minimising ``sum_i min_m (w_i - L_m(b))^2`` where
``L_m(b) = sum_k bit_k(m) b_k``. Zero weights are exact with mask 0 and take no part in the fit;
a non-zero weight nearer 0 than to every non-zero level gets mask 0 (the synapse is dropped and
its CAM entry freed).

Algorithm (:func:`fit_codebook`): alternating minimisation, which never increases the objective:

1. given the bases, assign every weight to its nearest level (ties go to the smaller level; among
   equal levels to the lowest mask);
2. given the assignment (the 16 x 4 mask matrix), solve the non-negative least-squares problem
   for the bases (``scipy.optimize.nnls``); a base that no assigned mask uses keeps its value;
3. repeat until the assignment no longer changes.

Both steps run on the *sorted* weights with prefix sums of ``w`` and ``w**2``: an assignment is
15 boundaries found by binary search and every group's count, sum and squared error come from the
prefix sums, so an iteration costs O(16 log N) whatever the number of synapses N (only the initial
sort is O(N log N)). The least-squares step uses the same sufficient statistics: the rows of a
group are replaced by one row weighted by sqrt(count) with the group mean as target.

The objective has local minima, so the fit restarts from several starting bases and keeps the
best: the fixed 1:2:4:8 ladder at its best scale, a ladder fitted to the weights' quantiles, a
subset-sum search over the distinct values or 1-D k-means centres (a centre that no subset sum of
the bases found so far explains adds a base; on a core whose weights are exactly representable
this recovers the bases), then seeded random starts. Results are deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Codebook", "QuantStats", "CoreQuantization", "fit_codebook", "fixed_ladder_codebook",
           "quantize", "quantization_stats", "quantize_per_core", "subset_sums", "kind_scales"]

DEFAULT_N_BASE = 4  # SYAM_W0..W3
_MAX_ITER = 200
# the ladder's starting scales: the weights' p-quantile / 15, each refined by alternating steps
_LADDER_START_QUANTILES = (1.0, 0.99, 0.95, 0.9, 0.75)


@dataclass(frozen=True, eq=False)
class Codebook:
    """The base weights of one core, ascending (``bases[k]`` is ``SYAM_Wk``), in weight units.

    ``levels[m]`` is the weight a synapse with mask ``m`` gets. ``sse`` is the squared error on the
    weights it was fitted to, ``method`` ``"fitted"`` or ``"ladder"``, ``start`` the winning
    restart and ``iterations`` its alternating steps.
    """

    bases: np.ndarray
    sse: float = float("nan")
    method: str = "fitted"
    start: str = ""
    iterations: int = 0

    @property
    def n_base(self) -> int:
        return int(self.bases.shape[0])

    @property
    def levels(self) -> np.ndarray:
        return subset_sums(self.bases)

    def to_dict(self) -> dict[str, Any]:
        return {"bases": [float(b) for b in self.bases], "sse": float(self.sse),
                "method": self.method, "start": self.start, "iterations": self.iterations}


@dataclass(frozen=True)
class QuantStats:
    """Reconstruction error over the non-zero weights (zeros are exact and not counted).

    ``relative_rmse`` is ``||w - w_q|| / ||w||``; ``dropped`` counts non-zero weights quantized to
    mask 0 (CAM entries freed).
    """

    n_synapses: int
    dropped: int
    rmse: float
    relative_rmse: float
    max_error: float

    def to_dict(self) -> dict[str, Any]:
        return {"n_synapses": self.n_synapses, "dropped": self.dropped, "rmse": self.rmse,
                "relative_rmse": self.relative_rmse, "max_error": self.max_error}


class CoreQuantization(NamedTuple):
    """What :func:`quantize_per_core` returns for one core; unpacks as a 4-tuple."""

    codebook: Codebook
    masks: np.ndarray
    reconstructed: np.ndarray
    stats: QuantStats


def mask_bits(n_base: int = DEFAULT_N_BASE) -> np.ndarray:
    """The (2**n_base, n_base) 0/1 matrix whose row m holds the bits of mask m (bit k = base k)."""
    masks = np.arange(1 << n_base)
    return ((masks[:, None] >> np.arange(n_base)[None, :]) & 1).astype(np.float64)


def subset_sums(bases: np.ndarray) -> np.ndarray:
    """All 2**n subset sums of ``bases`` in mask order: ``out[m] = sum_k bit_k(m) * bases[k]``."""
    bases = np.asarray(bases, dtype=np.float64)
    return mask_bits(bases.shape[0]) @ bases


# ---------------------------------------------------------------- sufficient statistics
@dataclass
class _Sorted:
    """Sorted non-zero weights (scaled to max 1) with prefix sums of w and w**2."""

    w: np.ndarray
    c1: np.ndarray = field(init=False)
    c2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.c1 = np.concatenate(([0.0], np.cumsum(self.w)))
        self.c2 = np.concatenate(([0.0], np.cumsum(self.w * self.w)))

    def groups(self, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Count and sum of the weights nearest to each level (mask order), and the total SSE."""
        uniq, first = _unique_levels(levels)
        mids = 0.5 * (uniq[1:] + uniq[:-1])
        # weights <= a midpoint go to the lower level: the same rule as quantize()
        bounds = np.empty(uniq.size + 1, dtype=np.int64)
        bounds[0], bounds[-1] = 0, self.w.size
        bounds[1:-1] = np.searchsorted(self.w, mids, side="right")
        n = (bounds[1:] - bounds[:-1]).astype(np.float64)
        c1, c2 = self.c1[bounds], self.c2[bounds]
        s = c1[1:] - c1[:-1]
        q = c2[1:] - c2[:-1]
        sse = float(np.sum(q - 2.0 * uniq * s + n * uniq * uniq))
        counts = np.zeros(levels.shape[0])
        sums = np.zeros(levels.shape[0])
        counts[first] = n
        sums[first] = s
        return counts, sums, max(sse, 0.0)

    def exact_sse(self, levels: np.ndarray) -> float:
        recon = _nearest_levels(self.w, levels)[1]
        return float(np.sum((self.w - recon) ** 2))


def _unique_levels(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct levels ascending, and for each the lowest mask that realises it."""
    order = np.argsort(levels, kind="stable")
    ordered = levels[order]
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep], order[keep]


def _nearest_levels(w: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask and level nearest to each weight; ties to the smaller level, then the lowest mask."""
    uniq, first = _unique_levels(levels)
    mids = 0.5 * (uniq[1:] + uniq[:-1])
    j = np.searchsorted(mids, w, side="left")
    return first[j], uniq[j]


# ---------------------------------------------------------------- alternating minimisation
def _solve_bases(bits: np.ndarray, counts: np.ndarray, sums: np.ndarray,
                 previous: np.ndarray) -> np.ndarray:
    """NNLS for the bases given the assignment; bases no populated mask uses keep their value."""
    rows = counts > 0
    used = bits[rows].any(axis=0)
    bases = previous.copy()
    if not used.any():
        return bases
    root = np.sqrt(counts[rows])
    a = bits[rows][:, used] * root[:, None]
    y = sums[rows] / root
    from scipy.optimize import nnls  # scipy.optimize takes 0.4 s to import: only when fitting

    bases[used] = nnls(a, y)[0]
    return bases


def _alternate(sw: _Sorted, bases: np.ndarray, bits: np.ndarray,
               tied: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Alternate assignment and least squares from ``bases`` until the assignment is stable.

    With ``tied`` the bases are ``s * tied`` and only the scale ``s`` is fitted (the ladder).
    """
    last: tuple[np.ndarray, np.ndarray] | None = None
    iterations = 0
    while iterations < _MAX_ITER:
        iterations += 1
        counts, sums, _ = sw.groups(bits @ bases)
        if last is not None and np.array_equal(counts, last[0]) and np.array_equal(sums, last[1]):
            break
        last = (counts, sums)
        if tied is None:
            bases = _solve_bases(bits, counts, sums, bases)
        else:
            m = bits @ tied
            den = float(np.sum(counts * m * m))
            if den > 0:
                bases = tied * (float(np.sum(sums * m)) / den)
    return bases, iterations


def _kmeans_1d(sw: _Sorted, k: int) -> np.ndarray:
    """Sorted 1-D k-means centres of the weights (Lloyd from quantiles, on prefix sums)."""
    centres = np.quantile(sw.w, (np.arange(k) + 0.5) / k)
    for _ in range(_MAX_ITER):
        levels = np.unique(centres)
        counts, sums, _ = sw.groups(levels)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), levels)
        if np.array_equal(new, levels):
            break
        centres = new
    return np.unique(centres)


def _greedy_start(sw: _Sorted, targets: np.ndarray, n_base: int, exact: bool) -> np.ndarray:
    """Bases from ascending target levels by a small subset-sum search.

    Walking the targets upwards, a target that no subset sum of the bases so far explains needs
    a new base ``t - S`` for some subset sum ``S < t`` of those bases (``S = 0``: the target is a
    base itself). Every such choice is followed (at most 1 * 2 * 4 * 8 = 64 complete sets for 4
    bases) and the set with the smallest squared error on the weights wins.
    """
    found: list[list[float]] = []

    def explained(bases: list[float], j: int) -> bool:
        t = targets[j]
        tol = 1e-9 if exact else 0.5 * (t - targets[j - 1])
        return bool(np.min(np.abs(subset_sums(np.array(bases)) - t)) <= tol)

    def search(bases: list[float], j: int) -> None:
        while j < targets.size and len(bases) < n_base and bases and explained(bases, j):
            j += 1
        if j == targets.size or len(bases) == n_base:
            found.append(bases)
            return
        sums = subset_sums(np.array(bases)) if bases else np.zeros(1)
        for s in np.unique(sums[sums < targets[j]]):
            search(bases + [float(targets[j] - s)], j + 1)

    search([], 0)
    best, best_sse = None, np.inf
    for bases in found:
        while len(bases) < n_base:  # fewer distinct values than bases: the rest go unused
            bases = bases + [2.0 * max(bases)]
        sse = sw.groups(subset_sums(np.array(bases)))[2]
        if sse < best_sse:
            best, best_sse = bases, sse
    assert best is not None
    return np.array(best)


def _ladder_scale(sw: _Sorted, bits: np.ndarray, ladder: np.ndarray) -> tuple[np.ndarray, int]:
    """The best-scaled ladder: alternating scale fits from several starting scales."""
    top = float(ladder.sum())
    best: tuple[float, np.ndarray, int] | None = None
    for p in _LADDER_START_QUANTILES:
        start = ladder * (float(np.quantile(sw.w, p)) / top)
        bases, it = _alternate(sw, start, bits, tied=ladder)
        sse = sw.groups(bits @ bases)[2]
        if best is None or sse < best[0]:
            best = (sse, bases, it)
    assert best is not None
    return best[1], best[2]


def _prepare(weights: np.ndarray) -> tuple[_Sorted | None, float]:
    w = np.asarray(weights, dtype=np.float64).ravel()
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contain NaN or infinite values")
    if w.size and float(w.min()) < 0:
        raise ValueError("weights must be non-negative (on DYNAP-SE2 the sign is the dendrite "
                         "type); quantize the magnitudes of each kind")
    nz = np.sort(w[w > 0])
    if nz.size == 0:
        return None, 1.0
    scale = float(nz[-1])
    return _Sorted(nz / scale), scale


def _check_n_base(n_base: int) -> None:
    if not 1 <= n_base <= 8:
        raise ValueError(f"n_base must be in 1..8 (masks are uint8), got {n_base}")


def fit_codebook(weights: np.ndarray, *, n_base: int = DEFAULT_N_BASE, seed: int = 0,
                 restarts: int = 8) -> Codebook:
    """Fit ``n_base`` non-negative bases minimising the squared error of the non-zero weights.

    ``weights``: all synapse weights of one core, any shape, non-negative (zeros are ignored).
    ``restarts``: number of starting points (ladder, quantile ladder, greedy subset sums, then
    random ones drawn from ``numpy.random.default_rng(seed)``); the best fit is kept.
    """
    _check_n_base(n_base)
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    sw, scale = _prepare(weights)
    if sw is None:
        return Codebook(np.zeros(n_base), 0.0, "fitted", "empty", 0)
    bits = mask_bits(n_base)
    ladder = 2.0 ** np.arange(n_base)
    n_levels = (1 << n_base) - 1

    starts: list[tuple[str, np.ndarray]] = [("ladder", _ladder_scale(sw, bits, ladder)[0])]
    if restarts > 1:
        q = np.quantile(sw.w, (np.arange(n_levels) + 0.5) / n_levels)
        from scipy.optimize import nnls

        starts.append(("quantile", nnls(bits[1:], q)[0]))
    if restarts > 2:
        distinct = np.unique(sw.w)
        exact = distinct.size <= n_levels
        targets = distinct if exact else _kmeans_1d(sw, n_levels)
        starts.append(("greedy", _greedy_start(sw, targets, n_base, exact)))
    rng = np.random.default_rng(seed)
    for r in range(restarts - len(starts)):
        top = float(np.quantile(sw.w, rng.uniform(0.9, 1.0)))
        starts.append((f"random{r}", rng.dirichlet(np.ones(n_base)) * top))

    best: tuple[float, str, np.ndarray, int] | None = None
    for name, start in starts:
        bases, it = _alternate(sw, start, bits)
        sse = sw.exact_sse(bits @ bases)
        if best is None or sse < best[0]:
            best = (sse, name, bases, it)
    assert best is not None
    sse, name, bases, it = best
    return Codebook(np.sort(bases) * scale, sse * scale * scale, "fitted", name, it)


def fixed_ladder_codebook(weights: np.ndarray, *, n_base: int = DEFAULT_N_BASE) -> Codebook:
    """Bases ``s * (1, 2, 4, 8)`` with the scale ``s`` that minimises the squared error."""
    _check_n_base(n_base)
    ladder = 2.0 ** np.arange(n_base)
    sw, scale = _prepare(weights)
    if sw is None:
        return Codebook(np.zeros(n_base), 0.0, "ladder", "empty", 0)
    bits = mask_bits(n_base)
    bases, it = _ladder_scale(sw, bits, ladder)
    sse = sw.exact_sse(bits @ bases)
    return Codebook(bases * scale, sse * scale * scale, "ladder", "ladder", it)


def quantize(weights: np.ndarray, codebook: Codebook) -> tuple[np.ndarray, np.ndarray]:
    """Nearest level for every weight: ``(masks uint8, reconstructed float64)``, same shape.

    Zeros get mask 0. A non-zero weight nearer 0 than to the smallest non-zero level gets mask 0
    too: that synapse is dropped (:func:`quantization_stats` counts them).
    """
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contain NaN or infinite values")
    if w.size and float(w.min()) < 0:
        raise ValueError("weights must be non-negative (the sign is the dendrite type)")
    masks, recon = _nearest_levels(w.ravel(), codebook.levels)
    return masks.astype(np.uint8).reshape(w.shape), recon.reshape(w.shape)


def quantization_stats(weights: np.ndarray, reconstructed: np.ndarray) -> QuantStats:
    """Error of ``reconstructed`` against ``weights`` over the non-zero weights."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    r = np.asarray(reconstructed, dtype=np.float64).ravel()
    nz = w > 0
    n = int(nz.sum())
    if n == 0:
        return QuantStats(0, 0, 0.0, 0.0, 0.0)
    err = r[nz] - w[nz]
    sse = float(np.sum(err * err))
    return QuantStats(n_synapses=n, dropped=int(np.sum(r[nz] == 0)),
                      rmse=float(np.sqrt(sse / n)),
                      relative_rmse=float(np.sqrt(sse / np.sum(w[nz] ** 2))),
                      max_error=float(np.max(np.abs(err))))


def quantize_per_core(weight_groups: Mapping[Hashable, np.ndarray], seed: int = 0, *,
                      n_base: int = DEFAULT_N_BASE,
                      restarts: int = 8) -> dict[Hashable, CoreQuantization]:
    """Fit a codebook per core and quantize that core's weights with it.

    ``weight_groups`` maps a core id to all weights landing on that core (every kind together,
    e.g. concatenated flattened arrays). Every core is fitted with the same ``seed``, so a core's
    result does not depend on the other cores or their order.
    """
    out: dict[Hashable, CoreQuantization] = {}
    for core, weights in weight_groups.items():
        codebook = fit_codebook(weights, n_base=n_base, seed=seed, restarts=restarts)
        masks, recon = quantize(weights, codebook)
        out[core] = CoreQuantization(codebook, masks, recon, quantization_stats(weights, recon))
    return out


def kind_scales(weights_by_kind: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Root mean square of each kind's non-zero weights (1.0 for a kind without any).

    One core's bases are shared by all its dendrite types, but each dendrite type has its own
    gain bias (``DEAM_EGAIN_P``, ``DEGA_IGAIN_P``, ``DESC_IGAIN_P``). Dividing each kind's weights
    by its scale before fitting one codebook, and multiplying that dendrite's gain by it, keeps a
    kind whose weights are much smaller than the others' (``W_EI * g_I`` on SHUNT, typically)
    from being dropped altogether by the squared-error fit.
    """
    scales = {}
    for kind, weights in weights_by_kind.items():
        w = np.asarray(weights, dtype=np.float64)
        nz = w[w > 0]
        scales[kind] = float(np.sqrt(np.mean(nz * nz))) if nz.size else 1.0
    return scales
