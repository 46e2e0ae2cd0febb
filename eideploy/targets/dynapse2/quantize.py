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
* **One codebook per core.** A core's four base weights (``SYAM_W0..W3``) are shared by all its
  neurons and all dendrite types, so one codebook is fitted (``eideploy.quant``) on the magnitudes
  of all synapses landing on that core, every kind together. A synapse whose weight quantizes to
  mask 0 is dropped: it frees its CAM entry.
* **b_E per core.** A core has one DC current: the bias must be constant over each core's neurons
  (the placement aligns populations whose bias varies per core); it is kept as that core's DC value
  in the graph (``arrays["bias"]``, one value per neuron), otherwise :class:`MappingError`.

The result's graph is an ordinary :class:`EIGraph` (all projections sparse, weights the
reconstructed levels in float64), so the float executor runs it and it can be compared with the
original. Deterministic for a seed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...graph.ir import EIGraph, GraphError, Population, Projection
from ...graph.lower import unroll_conv
from ...quant import Codebook, quantization_stats, quantize_per_core, subset_sums
from .place import BIAS_RTOL, MappingError, Placement, population_bias
from .target import Target

__all__ = ["QuantizedGraph", "quantize_graph", "to_sparse", "core_levels"]

#: Projection kinds that g_E multiplies (the numerator of Eq. 14).
GAIN_KINDS = ("exc", "sub")


@dataclass
class QuantizedGraph:
    """A graph whose every synapse is a base-weight mask of its target's core.

    ``graph``: the quantized, all-sparse graph (weights = reconstructed levels, dropped synapses
    removed, g_E folded, ``bias`` = the core DC per neuron). ``masks[projection]``: uint8 mask per
    synapse, aligned with that projection's ``indices``. ``codebooks[(chip, core)]``: the core's
    bases. ``dc[(chip, core)]``: the core's DC value (graph units). ``stats``: reconstruction
    error per layer, per core and in total (relative RMSE, max error, dropped synapses).
    """

    graph: EIGraph
    masks: dict[str, np.ndarray]
    codebooks: dict[tuple[int, int], Codebook]
    dc: dict[tuple[int, int], float]
    stats: dict[str, Any]
    seed: int = 0


def _json_plain(value: Any) -> Any:
    """``value`` as the JSON configuration gives it back (tuples become lists, numpy scalars
    plain numbers), so that ``config_to_graph`` reproduces the quantized graph exactly."""
    return json.loads(json.dumps(value, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


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
    value = pop.arrays.get(key)
    if value is None:
        return np.full(pop.size, default)
    value = np.asarray(value, dtype=np.float64).reshape(-1)
    if value.size == pop.size:
        return value
    if value.size == 1:
        return np.repeat(value, pop.size)
    if value.size == pop.channels and pop.size % pop.channels == 0:
        return np.repeat(value, pop.size // pop.channels)
    raise MappingError(f"population {pop.name}: {key} has {value.size} values; expected 1, "
                       f"{pop.channels} (per channel) or {pop.size} (per neuron)")


def core_levels(codebook: Codebook) -> np.ndarray:
    """The weight of every mask of a core, ``levels[m] = sum of bases selected by m`` (float64):
    the single definition the quantized graph and the configuration's reverse path share."""
    return subset_sums(np.asarray(codebook.bases, dtype=np.float64))


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


def quantize_graph(graph: EIGraph, placement: Placement, target: Target, *,
                   seed: int = 0) -> QuantizedGraph:
    """Fold g_E, fit one codebook per core on all synapses landing there, quantize every
    synapse to its core's nearest level and hold b_E as the core DC (see the module doc)."""
    sparse = to_sparse(graph)
    keys = [c.key for c in placement.cores]
    lookup = _core_lookup(placement)
    for pop in sparse.populations:
        if pop.role != "input" and pop.size > 0 and (
                pop.name not in placement.location
                or placement.location[pop.name].shape != (pop.size, 3)):
            raise MappingError(f"population {pop.name} ({pop.size} neurons) is not placed by "
                               "this placement (it was made for another graph)")

    # g_E folded into the numerator's weights (Eq. 14): exact.
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
    weights: list[np.ndarray] = []
    cores: list[np.ndarray] = []
    for proj in sparse.projections:
        w = proj.weight
        if proj.target in gains and proj.kind in GAIN_KINDS:
            w = w * gains[proj.target][proj.indices[:, 0]]
        weights.append(w)
        cores.append(_core_index(placement, proj.target, lookup)[proj.indices[:, 0]])

    flat_w = np.concatenate(weights) if weights else np.zeros(0)
    flat_core = np.concatenate(cores) if cores else np.zeros(0, np.int64)
    order = np.argsort(flat_core, kind="stable")
    bounds = np.searchsorted(flat_core[order], np.arange(len(keys) + 1))
    groups = {keys[i]: flat_w[order[bounds[i]:bounds[i + 1]]] for i in range(len(keys))}
    fitted = quantize_per_core(groups, seed=seed, n_base=target.base_weights_per_core)
    flat_mask = np.zeros(flat_w.size, dtype=np.uint8)
    for i, key in enumerate(keys):
        flat_mask[order[bounds[i]:bounds[i + 1]]] = fitted[key].masks
    codebooks = {key: fitted[key].codebook for key in keys}
    levels = np.stack([core_levels(codebooks[k]) for k in keys]) if keys else np.zeros((0, 1))
    flat_q = levels[flat_core, flat_mask] if flat_w.size else np.zeros(0)

    dc_values = _core_dc(sparse, placement, keys, lookup)
    dc = {k: float(dc_values[i]) for i, k in enumerate(keys)}

    # the quantized graph: sparse projections without their dropped synapses
    masks: dict[str, np.ndarray] = {}
    projections: list[Projection] = []
    layer_of = {p.name: p.layer or p.name for p in sparse.populations}
    by_layer: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    by_projection: dict[str, dict[str, Any]] = {}
    start = 0
    for proj, w in zip(sparse.projections, weights, strict=True):
        stop = start + w.size
        mask, q = flat_mask[start:stop], flat_q[start:stop]
        keep = mask != 0
        masks[proj.name] = np.ascontiguousarray(mask[keep])
        projections.append(Projection(proj.name, proj.source, proj.target, proj.kind, "sparse",
                                      np.ascontiguousarray(q[keep]),
                                      np.ascontiguousarray(proj.indices[keep]), {}))
        by_layer.setdefault(layer_of[proj.target], []).append((w, q))
        by_projection[proj.name] = quantization_stats(w, q).to_dict()
        start = stop
    populations = []
    for pop in sparse.populations:
        arrays: dict[str, np.ndarray] = {}
        if pop.role != "input":
            arrays["bias"] = dc_values[_core_index(placement, pop.name, lookup)]
            if pop.role == "exc":
                arrays["gain_e"] = np.ones(pop.size)
        populations.append(Population(pop.name, pop.role, tuple(int(s) for s in pop.shape),
                                      pop.layer, _json_plain(pop.params), arrays))
    qgraph = EIGraph(sparse.name, int(sparse.T), populations, projections,
                     _json_plain(sparse.input), _json_plain(sparse.readout),
                     _json_plain(sparse.division),
                     _json_plain({**sparse.meta,
                                  "quantized": {"target": target.name, "seed": int(seed)}}))
    qgraph.validate()

    def joined(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
        return quantization_stats(np.concatenate([p[0] for p in pairs]),
                                  np.concatenate([p[1] for p in pairs])).to_dict()

    stats = {
        "total": quantization_stats(flat_w, flat_q).to_dict(),
        "layers": {layer: joined(pairs) for layer, pairs in by_layer.items()},
        "projections": by_projection,
        "cores": [{"chip": k[0], "core": k[1], "bases": codebooks[k].to_dict()["bases"],
                   **fitted[k].stats.to_dict()} for k in keys],
    }
    return QuantizedGraph(qgraph, masks, codebooks, dc, stats, int(seed))
