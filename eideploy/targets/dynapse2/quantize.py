"""Quantization of a placed E-I graph for DYNAP-SE2: every synapse becomes a 4-bit base mask.

What the chip can hold, and what this module therefore does (spec/dynapse2.md §1, §3):

* **Explicit synapses.** Every synapse is one CAM entry, so conv, point-wise, pooled and dense
  projections become ``sparse`` ones (:func:`to_sparse`): zero weights dropped, entries sorted by
  (target, source), duplicates summed (parallel synapses add up). Two projections of the same
  kind between the same populations are merged into the first (their synapses land on the same
  dendrite and cannot be told apart on the chip).
* **g_E folded into the weights.** The chip has no per-neuron gain. Eq. 14,
  ``I_int = g_E (I_EE - I_sub) / Stab(I_div) + b_E``, is linear in g_E over the numerator, so
  multiplying an E neuron's incoming AMPA (``exc``) and GABA (``sub``) weights by its g_E is exact;
  its ``gain_e`` becomes 1. SHUNT (``div``) weights are untouched: the divisor has no g_E. The
  readout has no g_E.
* **One codebook per core, one gain per dendrite.** A core's four base weights
  (``SYAM_W0..W3``) are shared by all its neurons and all dendrite types, but each dendrite type
  has its own gain bias per core (``DEAM_EGAIN_P``, ``DEGA_IGAIN_P``, ``DESC_IGAIN_P``), and a
  DPI synapse's current is linear in that gain. So a CAM entry of dendrite ``d`` with mask ``m``
  weighs ``s_d * level(m)``: ``s_d`` is the core's dendrite scale (its gain over a reference,
  ``compile.dendrite_gain_reference``). This matters on trained E-I models: the SHUNT weights
  ``W_EI * g_I`` are ~35x smaller than the AMPA weights, and one squared-error codebook for all
  of them drops every SHUNT synapse (all divisive inhibition lost).

  :func:`fit_core` chooses the codebook and the scales together. It minimises the squared error
  with every kind measured in units of the RMS of its own non-zero weights on that core,
  ``J = sum_i ((w_i - s_k(i) level(m_i)) / rms_k(i))^2``, over two candidates, keeping the
  lower ``J`` (ties: the first): (1) one codebook fitted on ``w`` with all scales 1 (the shared
  fit: exact when the weights are levels of one codebook); (2) one codebook fitted on ``w / rms_k``,
  every kind together (``quant.kind_scales``). Each candidate's scales are then refined for its
  codebook by alternating the nearest mask for ``w / s_k`` and the least-squares scale of each
  kind ``s_k = sum(w level) / sum(level^2)`` (neither step can raise ``J``). The scales are
  normalised so that the largest is 1 (the bases carry the units; a kind absent from the core
  keeps scale 1), and a core with one kind keeps scale 1: its result is the shared fit.
  ``scaling="shared"`` keeps every scale at 1 (one codebook for all kinds, the old behaviour).
  A synapse whose weight quantizes to mask 0 is dropped: it frees its CAM entry.
* **b_E per core.** A core has one DC current: the bias must be constant over each core's neurons
  (the placement aligns populations whose bias varies per core); it is kept as that core's DC value
  in the graph (``arrays["bias"]``, one value per neuron), otherwise :class:`MappingError`.

The result's graph is an ordinary :class:`EIGraph` (all projections sparse, weights the
reconstructed levels in float64), so the float executor runs it and it can be compared with the
original. Deterministic for a seed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...atomic import json_plain
from ...graph.ir import EIGraph, GraphError, Population, Projection
from ...graph.unroll import unroll_conv
from ...quant import (
    Codebook,
    fit_codebook,
    kind_scales,
    quantization_stats,
    quantize,
    subset_sums,
)
from .place import BIAS_RTOL, MappingError, Placement, population_bias
from .target import Target

__all__ = ["QuantizedGraph", "CoreFit", "quantize_graph", "to_sparse", "core_levels",
           "fit_core", "target_dendrites", "SCALINGS"]

#: Projection kinds that g_E multiplies (the numerator of Eq. 14).
GAIN_KINDS = ("exc", "sub")
#: ``quantize_graph(scaling=...)``: a scale per dendrite fitted with the codebook, or none.
SCALINGS = ("per_dendrite", "shared")
_SCALE_ITERATIONS = 50


@dataclass
class QuantizedGraph:
    """A graph whose every synapse is a base-weight mask of its target's core.

    ``graph``: the quantized, all-sparse graph (weights = reconstructed levels, dropped synapses
    removed, g_E folded, ``bias`` = the core DC per neuron). ``masks[projection]``: uint8 mask per
    synapse, aligned with that projection's ``indices``. ``codebooks[(chip, core)]``: the core's
    bases. ``dc[(chip, core)]``: the core's DC value (graph units). ``stats``: reconstruction
    error per layer, per projection, per dendrite, per core (with its dendrite scales and, per
    dendrite, its error) and in total (relative RMSE, max error, dropped synapses).
    ``dendrite_scales[(chip, core)]``: the dendrite scales ``s_d`` (module doc).
    """

    graph: EIGraph
    masks: dict[str, np.ndarray]
    codebooks: dict[tuple[int, int], Codebook]
    dc: dict[tuple[int, int], float]
    stats: dict[str, Any]
    seed: int = 0
    #: ``dendrite_scales[(chip, core)][dendrite]``: ``s_d``, a CAM entry's weight is
    #: ``s_d * level(mask)`` (1.0 for every dendrite when absent: the shared codebook).
    dendrite_scales: dict[tuple[int, int], dict[str, float]] = field(default_factory=dict)


def to_sparse(graph: EIGraph) -> EIGraph:
    """A copy of ``graph`` with every projection ``sparse`` (float64 weights, int64 indices),
    zero weights dropped, entries sorted by (target, source) with duplicate pairs summed, and
    projections of one kind between the same two populations merged into the first."""
    needs_unroll = any(p.op not in ("dense", "sparse") or int(p.attrs.get("pool", 1) or 1) > 1
                       for p in graph.projections)
    source = unroll_conv(graph) if needs_unroll else copy.deepcopy(graph)
    source.validate()
    sizes = {p.name: p.size for p in source.populations}
    parts: dict[tuple[str, str, str], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    first: dict[tuple[str, str, str], Projection] = {}
    merged: dict[str, list[str]] = {}
    for proj in source.projections:
        n_tgt, n_src = sizes[proj.target], sizes[proj.source]
        weight = np.asarray(proj.weight, dtype=np.float64)
        if proj.op == "dense":
            if weight.shape != (n_tgt, n_src):
                raise GraphError(f"projection {proj.name}: dense weight {weight.shape}, expected "
                                 f"({n_tgt}, {n_src})")
            tgt, src = np.nonzero(weight)
            value = weight[tgt, src]
        else:
            idx = np.asarray(proj.indices, dtype=np.int64)
            tgt, src, value = idx[:, 0], idx[:, 1], weight.reshape(-1)
            if idx.size and (idx.min() < 0 or tgt.max() >= n_tgt or src.max() >= n_src):
                raise GraphError(f"projection {proj.name}: indices out of range for {n_tgt} "
                                 f"target and {n_src} source neurons")
        key = (proj.source, proj.target, proj.kind)
        if key in first:
            merged.setdefault(first[key].name, []).append(proj.name)
        else:
            first[key] = proj
        parts.setdefault(key, []).append((tgt, src, value))
    projections = []
    for key, proj in first.items():
        n_src = sizes[proj.source]
        tgt = np.concatenate([p[0] for p in parts[key]])
        src = np.concatenate([p[1] for p in parts[key]])
        value = np.concatenate([p[2] for p in parts[key]])
        flat, inverse = np.unique(tgt * n_src + src, return_inverse=True)  # sorted (tgt, src)
        summed = np.bincount(inverse.reshape(-1), weights=value, minlength=flat.size)
        keep = summed != 0
        tgt, src = np.divmod(flat[keep], n_src)
        projections.append(Projection(proj.name, proj.source, proj.target, proj.kind, "sparse",
                                      np.ascontiguousarray(summed[keep]),
                                      np.stack([tgt, src], axis=1).astype(np.int64), {}))
    source.projections = projections
    if merged:
        source.meta = {**source.meta, "merged_projections": merged}
    source.validate()
    return source


def _per_neuron(pop: Population, key: str, default: float) -> np.ndarray:
    try:
        return pop.per_neuron(key, default)
    except ValueError as exc:
        raise MappingError(str(exc)) from None


def core_levels(codebook: Codebook) -> np.ndarray:
    """The weight of every mask of a core, ``levels[m] = sum of bases selected by m`` (float64):
    the single definition the quantized graph and the configuration's reverse path share."""
    return subset_sums(np.asarray(codebook.bases, dtype=np.float64))


def target_dendrites(target: Target) -> list[str]:
    """The dendrites carrying the graph's projection kinds, in the target's kind order."""
    return list(dict.fromkeys(target.kind_dendrites.values()))


@dataclass(frozen=True, eq=False)
class CoreFit:
    """One core's quantization: a CAM entry of kind ``k`` with mask ``m`` weighs
    ``scales[k] * codebook.levels[m]`` (``reconstructed``). ``objective``: ``J`` (module doc);
    ``scaling``: ``"shared"`` when every scale is 1, else ``"per_dendrite"``."""

    codebook: Codebook
    scales: np.ndarray
    masks: np.ndarray
    reconstructed: np.ndarray
    objective: float
    scaling: str


def _refine_scales(w: np.ndarray, kind: np.ndarray, codebook: Codebook, scales: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Alternate nearest masks for ``w / s_k`` and each kind's least-squares ``s_k`` for a fixed
    codebook; returns ``(scales, masks)`` consistent with each other."""
    levels = codebook.levels
    n_kinds = scales.size
    s = scales.copy()
    masks = quantize(w / s[kind], codebook)[0]
    for _ in range(_SCALE_ITERATIONS):
        level = levels[masks]
        num = np.bincount(kind, weights=w * level, minlength=n_kinds)
        den = np.bincount(kind, weights=level * level, minlength=n_kinds)
        s = np.where(den > 0, num / np.where(den > 0, den, 1.0), s)
        new = quantize(w / s[kind], codebook)[0]
        if np.array_equal(new, masks):
            break
        masks = new
    return s, masks


def fit_core(weights: np.ndarray, kinds: np.ndarray, n_kinds: int, *, seed: int = 0,
             n_base: int = 4, scaling: str = "per_dendrite") -> CoreFit:
    """Fit one core's codebook and dendrite scales together (module doc).

    ``weights``: the core's non-negative synapse weights; ``kinds``: each synapse's dendrite
    index in ``0 .. n_kinds - 1``. Deterministic for a seed; vectorised over the synapses.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    kind = np.asarray(kinds, dtype=np.int64).reshape(-1)
    rms_of = kind_scales({k: w[kind == k] for k in range(n_kinds)})
    rms = np.array([rms_of[k] for k in range(n_kinds)])
    present = np.bincount(kind[w > 0], minlength=n_kinds) > 0
    ones = np.ones(n_kinds)

    def candidate(codebook: Codebook, scales: np.ndarray) -> tuple[float, Codebook, np.ndarray,
                                                                   np.ndarray]:
        if scaling == "per_dendrite" and np.count_nonzero(present) > 1:
            scales, masks = _refine_scales(w, kind, codebook, scales)
        else:
            masks = quantize(w / scales[kind], codebook)[0]
        err = (w - scales[kind] * codebook.levels[masks]) / rms[kind]
        return float(np.dot(err, err)), codebook, scales, masks

    best = candidate(fit_codebook(w, n_base=n_base, seed=seed), ones)
    if scaling == "per_dendrite" and np.count_nonzero(present) > 1:
        scaled = candidate(fit_codebook(w / rms[kind], n_base=n_base, seed=seed), rms.copy())
        if scaled[0] < best[0]:
            best = scaled
    objective, codebook, scales, masks = best
    # the largest scale present is 1: the bases carry the units, gains stay at or below the
    # reference; an absent kind keeps 1 (its gain is then the reference)
    top = float(scales[present].max()) if present.any() else 1.0
    scales = np.where(present, scales / top, 1.0)
    if top != 1.0:
        codebook = Codebook(np.asarray(codebook.bases) * top, codebook.sse, codebook.method,
                            codebook.start, codebook.iterations)
    reconstructed = scales[kind] * core_levels(codebook)[masks]
    err = w - reconstructed
    codebook = Codebook(codebook.bases, float(np.dot(err, err)), codebook.method, codebook.start,
                        codebook.iterations)
    return CoreFit(codebook, scales, masks.astype(np.uint8), reconstructed, objective,
                   "shared" if np.all(scales == 1.0) else "per_dendrite")


def _core_dc(sparse: EIGraph, placement: Placement, keys: list[tuple[int, int]],
             lookup: np.ndarray) -> np.ndarray:
    """One DC value per core; ``MappingError`` naming the population whose bias varies in one."""
    on_chip = [p for p in sparse.populations if p.role != "input" and p.size > 0]
    if not on_chip:
        return np.zeros(len(keys))
    core = np.concatenate([_core_index(placement, p.name, lookup) for p in on_chip])
    bias = np.concatenate([population_bias(p) for p in on_chip])
    owner = np.concatenate([np.full(p.size, i) for i, p in enumerate(on_chip)])
    low = np.full(len(keys), np.inf)
    high = np.full(len(keys), -np.inf)
    np.minimum.at(low, core, bias)
    np.maximum.at(high, core, bias)
    count = np.bincount(core, minlength=len(keys))
    scale = np.maximum(1.0, np.maximum(np.abs(low), np.abs(high)))
    varying = np.flatnonzero((count > 0) & (high - low > BIAS_RTOL * scale))
    if varying.size:
        where = []
        for c in varying:
            names = sorted({on_chip[i].name for i in np.unique(owner[core == c])})
            where.append(f"core {keys[c]} ({', '.join(names)}: bias from {low[c]:.6g} to "
                         f"{high[c]:.6g})")
        raise MappingError("per-neuron bias cannot be held by a core; train with a per-core "
                           "bias (recipe target.bias: per_core, or zero). The bias varies inside "
                           + "; ".join(where))
    # the midpoint: exactly the value when it is constant (x/2 + x/2 == x in floating point)
    return np.where(count > 0, low / 2 + high / 2, 0.0)


def _core_lookup(placement: Placement) -> np.ndarray:
    """Board-wide core number (``chip * cores_per_chip + core``) -> index into
    ``placement.cores`` (-1 for unused cores)."""
    cpc = placement.cores_per_chip
    chips = max((c.chip for c in placement.cores), default=-1) + 1
    lookup = np.full(chips * cpc, -1, dtype=np.int64)
    for i, c in enumerate(placement.cores):
        lookup[c.chip * cpc + c.core] = i
    return lookup


def _core_index(placement: Placement, population: str, lookup: np.ndarray) -> np.ndarray:
    """Index into ``placement.cores`` of every neuron of ``population``."""
    try:
        return lookup[placement.core_ids(population)]
    except KeyError:
        raise MappingError(f"population {population} is not placed (the placement was made for "
                           "another graph)") from None


@dataclass
class _Synapses:
    """Every synapse of the graph in projection order, g_E folded: weight, the index of its
    target's core in ``placement.cores``, its dendrite (index into ``target_dendrites``), and
    the per-projection weights (views of the same order) for the quantized graph."""

    weight: np.ndarray
    core: np.ndarray
    dendrite: np.ndarray
    per_projection: list[np.ndarray]

    def by_core(self, n_cores: int) -> tuple[np.ndarray, np.ndarray]:
        """A stable order grouping synapses by core, and each core's bounds in it."""
        order = np.argsort(self.core, kind="stable")
        return order, np.searchsorted(self.core[order], np.arange(n_cores + 1))


@dataclass
class _CoreFits:
    """Step 3's result: per core its fit, per synapse its mask and reconstructed weight."""

    fits: dict[tuple[int, int], CoreFit]
    mask: np.ndarray  # uint8 base-weight mask per synapse (0: dropped)
    quantized: np.ndarray  # s_d * level(mask) per synapse
    order: np.ndarray
    bounds: np.ndarray

    def rows(self, i: int) -> np.ndarray:
        """The synapses landing on core ``i`` (index into ``placement.cores``)."""
        return self.order[self.bounds[i]:self.bounds[i + 1]]


def _check_placed(sparse: EIGraph, placement: Placement) -> None:
    for pop in sparse.populations:
        if pop.role != "input" and pop.size > 0 and (
                pop.name not in placement.location
                or placement.location[pop.name].shape != (pop.size, 3)):
            raise MappingError(f"population {pop.name} ({pop.size} neurons) is not placed by "
                               "this placement (it was made for another graph)")


def _exc_gains(sparse: EIGraph) -> dict[str, np.ndarray]:
    """g_E per neuron of each E population, checked finite and >= 0 for folding."""
    gains: dict[str, np.ndarray] = {}
    for pop in sparse.populations:
        if pop.role == "exc":
            gain = _per_neuron(pop, "gain_e", 1.0)
            if not np.all(np.isfinite(gain)) or float(gain.min(initial=0.0)) < 0:
                bad = int(np.flatnonzero(~np.isfinite(gain) | (gain < 0))[0])
                raise MappingError(f"population {pop.name}: gain_e of neuron {bad} is "
                                   f"{gain[bad]}; folding g_E into the weights needs finite "
                                   "g_E >= 0 (the sign of a synapse is its dendrite)")
            gains[pop.name] = gain
    return gains


def _gather_synapses(sparse: EIGraph, placement: Placement, target: Target,
                     lookup: np.ndarray) -> _Synapses:
    """Steps 1-2: fold g_E into the numerator's weights (Eq. 14: exact) and label each synapse
    with its target's core and its dendrite."""
    gains = _exc_gains(sparse)
    dendrites = target_dendrites(target)
    dendrite_index = {kind: dendrites.index(target.dendrite(kind))
                      for kind in target.kind_dendrites}
    weights: list[np.ndarray] = []
    cores: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    for proj in sparse.projections:
        w = proj.weight
        if proj.target in gains and proj.kind in GAIN_KINDS:
            w = w * gains[proj.target][proj.indices[:, 0]]
        if proj.kind not in dendrite_index:
            raise MappingError(f"projection {proj.name}: target {target.name} has no dendrite "
                               f"for kind {proj.kind!r}")
        weights.append(w)
        cores.append(_core_index(placement, proj.target, lookup)[proj.indices[:, 0]])
        kinds.append(np.full(w.size, dendrite_index[proj.kind], dtype=np.int64))
    return _Synapses(np.concatenate(weights) if weights else np.zeros(0),
                     np.concatenate(cores) if cores else np.zeros(0, np.int64),
                     np.concatenate(kinds) if kinds else np.zeros(0, np.int64), weights)


def _fit_cores(syn: _Synapses, keys: list[tuple[int, int]], n_dendrites: int, *, seed: int,
               n_base: int, scaling: str) -> _CoreFits:
    """Step 3: one codebook and one scale per dendrite per core (:func:`fit_core`) on all
    synapses landing there; each synapse's mask and reconstructed weight."""
    order, bounds = syn.by_core(len(keys))
    mask = np.zeros(syn.weight.size, dtype=np.uint8)
    fits: dict[tuple[int, int], CoreFit] = {}
    for i, key in enumerate(keys):
        rows = order[bounds[i]:bounds[i + 1]]
        fits[key] = fit_core(syn.weight[rows], syn.dendrite[rows], n_dendrites, seed=seed,
                             n_base=n_base, scaling=scaling)
        mask[rows] = fits[key].masks
    levels = (np.stack([core_levels(fits[k].codebook) for k in keys]) if keys
              else np.zeros((0, 1)))
    scale_table = (np.stack([fits[k].scales for k in keys]) if keys
                   else np.ones((0, n_dendrites)))
    # the one definition of a CAM entry's weight, which config_to_graph repeats: s_d * level
    quantized = (scale_table[syn.core, syn.dendrite] * levels[syn.core, mask] if syn.weight.size
                 else np.zeros(0))
    return _CoreFits(fits, mask, quantized, order, bounds)


def _quantized_projections(sparse: EIGraph, syn: _Synapses, fit: _CoreFits
                           ) -> tuple[list[Projection], dict[str, np.ndarray]]:
    """Step 5: sparse projections of the reconstructed weights without their dropped synapses
    (mask 0), and each one's masks aligned with its indices."""
    masks: dict[str, np.ndarray] = {}
    projections: list[Projection] = []
    start = 0
    for proj, w in zip(sparse.projections, syn.per_projection, strict=True):
        stop = start + w.size
        mask, q = fit.mask[start:stop], fit.quantized[start:stop]
        keep = mask != 0
        masks[proj.name] = np.ascontiguousarray(mask[keep])
        projections.append(Projection(proj.name, proj.source, proj.target, proj.kind, "sparse",
                                      np.ascontiguousarray(q[keep]),
                                      np.ascontiguousarray(proj.indices[keep]), {}))
        start = stop
    return projections, masks


def _quantized_populations(sparse: EIGraph, placement: Placement, lookup: np.ndarray,
                           dc_values: np.ndarray) -> list[Population]:
    """Step 5: the populations with ``bias`` the DC of each neuron's core and ``gain_e`` 1 for
    E populations (folded into the weights)."""
    populations = []
    for pop in sparse.populations:
        arrays: dict[str, np.ndarray] = {}
        if pop.role != "input":
            arrays["bias"] = dc_values[_core_index(placement, pop.name, lookup)]
            if pop.role == "exc":
                arrays["gain_e"] = np.ones(pop.size)
        populations.append(Population(pop.name, pop.role, tuple(int(s) for s in pop.shape),
                                      pop.layer, json_plain(pop.params), arrays))
    return populations


def _quantization_report(sparse: EIGraph, syn: _Synapses, fit: _CoreFits,
                         keys: list[tuple[int, int]], dendrites: list[str],
                         scaling: str) -> dict[str, Any]:
    """Step 6: reconstruction error in total, per layer, projection, dendrite and core."""
    layer_of = {p.name: p.layer or p.name for p in sparse.populations}
    by_layer: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    by_projection: dict[str, dict[str, Any]] = {}
    start = 0
    for proj, w in zip(sparse.projections, syn.per_projection, strict=True):
        q = fit.quantized[start:start + w.size]
        by_layer.setdefault(layer_of[proj.target], []).append((w, q))
        by_projection[proj.name] = quantization_stats(w, q).to_dict()
        start += w.size

    def joined(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
        return quantization_stats(np.concatenate([p[0] for p in pairs]),
                                  np.concatenate([p[1] for p in pairs])).to_dict()

    def per_dendrite(rows: np.ndarray) -> dict[str, Any]:
        kind = syn.dendrite[rows]
        return {d: quantization_stats(syn.weight[rows][kind == j],
                                      fit.quantized[rows][kind == j]).to_dict()
                for j, d in enumerate(dendrites) if np.any(kind == j)}

    return {
        "total": quantization_stats(syn.weight, fit.quantized).to_dict(),
        "layers": {layer: joined(pairs) for layer, pairs in by_layer.items()},
        "projections": by_projection,
        "dendrites": per_dendrite(np.arange(syn.weight.size)),
        "scaling": scaling,
        "cores": [{"chip": k[0], "core": k[1], "bases": fit.fits[k].codebook.to_dict()["bases"],
                   "dendrite_scales": _scales_of(fit.fits[k], dendrites),
                   "scaling": fit.fits[k].scaling,
                   **quantization_stats(syn.weight[fit.rows(i)],
                                        fit.fits[k].reconstructed).to_dict(),
                   "dendrites": per_dendrite(fit.rows(i))}
                  for i, k in enumerate(keys)],
    }


def _scales_of(core_fit: CoreFit, dendrites: list[str]) -> dict[str, float]:
    return {d: float(core_fit.scales[j]) for j, d in enumerate(dendrites)}


def quantize_graph(graph: EIGraph, placement: Placement, target: Target, *,
                   seed: int = 0, scaling: str = "per_dendrite") -> QuantizedGraph:
    """Fold g_E, fit one codebook and one scale per dendrite per core on all synapses landing
    there (:func:`fit_core`), quantize every synapse to its core's nearest scaled level and hold
    b_E as the core DC (see the module doc). ``scaling="shared"``: every dendrite scale 1.

    Steps: fold g_E and gather the synapses by core and dendrite, fit the cores, the DC per
    core, the quantized graph, the error report.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    sparse = to_sparse(graph)
    keys = [c.key for c in placement.cores]
    lookup = _core_lookup(placement)
    _check_placed(sparse, placement)
    syn = _gather_synapses(sparse, placement, target, lookup)
    dendrites = target_dendrites(target)
    fit = _fit_cores(syn, keys, len(dendrites), seed=seed, n_base=target.base_weights_per_core,
                     scaling=scaling)
    dc_values = _core_dc(sparse, placement, keys, lookup)
    projections, masks = _quantized_projections(sparse, syn, fit)
    qgraph = EIGraph(sparse.name, int(sparse.T),
                     _quantized_populations(sparse, placement, lookup, dc_values), projections,
                     json_plain(sparse.input), json_plain(sparse.readout),
                     json_plain(sparse.division),
                     json_plain({**sparse.meta,
                                  "quantized": {"target": target.name, "seed": int(seed)}}))
    qgraph.validate()
    return QuantizedGraph(
        qgraph, masks, {key: fit.fits[key].codebook for key in keys},
        {k: float(dc_values[i]) for i, k in enumerate(keys)},
        _quantization_report(sparse, syn, fit, keys, dendrites, scaling), int(seed),
        {key: _scales_of(fit.fits[key], dendrites) for key in keys})
