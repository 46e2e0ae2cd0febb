"""Design-rule check: does an E-I graph fit a DYNAP-SE2 target, before any placement?

Every rule is checked and every violation is collected (spec/dynapse2.md §3): the user sees all
that must change at once, each with the layer, the neuron, what is needed against the limit, and
the recipe key that would fix it. Counts are computed on the graph as it is (conv layers are not
unrolled) with vectorised numpy, so a paper-sized VGG is checked in milliseconds.

Rules (ids in ``RULES``):

* ``fan-in``: CAM entries per neuron, one per non-zero synapse, all dendrites together: AMPA
  (``exc``) + GABA (``sub``) + SHUNT (``div``). An I neuron that inhibits an E neuron both ways
  costs that E neuron two entries. A source average-pooled by k costs k*k entries per pooled
  value: the chip has no pooling, each pooled neuron is its own synapse.
* ``neurons`` / ``cores`` / ``chips``: a core is a parameter group. Cores are counted per group
  exactly as the placer forms and fills them (``place.parameter_groups``, the one definition both
  use): populations with the same role, ``params`` and single bias value share cores, a group of
  ``N`` neurons takes ``ceil(N / neurons_per_core)`` cores, and the board needs
  ``ceil(cores / cores_per_chip)`` chips. So the DRC passes exactly the graphs the placer fits.
  The summary gives both views: per population (``cores``: what it would take alone, ``group``)
  and per group (``groups``: populations, neurons, cores).
* ``tags``: sources reaching one core need distinct tags. A population's sources are spread over
  the cores it occupies at best evenly. The placer lays a population on consecutive slots of its
  group's cores: the first population of a group (or one alone in its group) starts on a fresh
  core and spans ``ceil(n / neurons_per_core)`` cores, a later one may start part-way into a
  core and spans at most ``1 + ceil((n - 1) / neurons_per_core)`` (and at most its group's
  cores). ``ceil(distinct sources / cores spanned)`` is then a lower bound on the tags some core
  holding it needs. A group's cores together hear every source of its populations, so
  ``ceil(distinct sources of the group / group cores)`` is a lower bound too; it is reported
  (once, for the group) when no single population of the group already breaks the rule.
* ``spiking-readout``, ``spike-input``, ``spiking-inhibition``: the chip moves spikes only; an
  analog readout current, analog pixel input or an analog interneuron response
  (``response == "identity"``) cannot be mapped.
* ``per-neuron-bias``: every neuron of a core shares its DC bias, so a bias that varies inside a
  core (channel-major neuron order, ``neurons_per_core`` to a core) cannot be held.

Weight levels (15 per core) are not checked here: quantization makes any weights fit them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...graph.ir import EIGraph, GraphError, Population, Projection
from .place import BIAS_RTOL, ParameterGroup, parameter_groups
from .target import Target

__all__ = ["Violation", "DRCReport", "check", "fan_in", "RULES", "SPIKE_ENCODINGS"]

RULES = ("fan-in", "neurons", "cores", "chips", "tags", "spiking-readout", "spike-input",
         "spiking-inhibition", "per-neuron-bias")
SPIKE_ENCODINGS = frozenset({"spikes", "events", "rate", "poisson", "bernoulli", "if"})
_ROLE_TAG = {"exc": "E", "inh": "I", "readout": "readout", "input": "input"}
_BIAS_RTOL = BIAS_RTOL  # the placer's tolerance: one DC value per core


@dataclass
class Violation:
    """One broken rule in one population (or in the whole graph: ``population == ""``).

    ``neuron`` is the worst offending neuron (an index into the population, channel-major) and
    ``needed`` what it needs against ``limit``. Rules about many neurons keep them all:
    ``neurons`` holds every offending neuron and ``needs`` what each needs (fan-in).
    """

    rule: str
    layer: str
    population: str
    neuron: int | None
    needed: int
    limit: int
    hint: str
    message: str = ""
    neurons: np.ndarray | None = field(default=None, repr=False, compare=False)
    needs: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def count(self) -> int:
        """How many neurons break the rule (1 for graph-level rules)."""
        return 1 if self.neurons is None else int(self.neurons.size)

    def to_dict(self, max_neurons: int | None = None) -> dict[str, Any]:
        """JSON-able; ``max_neurons`` caps the neuron lists (``count`` stays exact)."""
        doc: dict[str, Any] = {"rule": self.rule, "layer": self.layer,
                               "population": self.population, "neuron": self.neuron,
                               "needed": self.needed, "limit": self.limit, "count": self.count,
                               "message": self.message, "hint": self.hint}
        for key in ("neurons", "needs"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = value[:max_neurons].tolist()
        return doc


@dataclass
class DRCReport:
    """All violations of a graph on a target, and a summary of what the graph needs."""

    violations: list[Violation]
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_rule(self) -> dict[str, list[Violation]]:
        groups: dict[str, list[Violation]] = {}
        for v in self.violations:
            groups.setdefault(v.rule, []).append(v)
        return groups

    def to_dict(self, max_neurons: int | None = None) -> dict[str, Any]:
        return {"ok": self.ok,
                "violations": [v.to_dict(max_neurons) for v in self.violations],
                "summary": self.summary}

    def format(self, max_per_rule: int = 10) -> str:
        """A readable report: violations grouped by rule, each group with its count and hints."""
        s = self.summary
        head = (f"DRC of graph {s['graph']!r} on target {s['target']!r}: {s['neurons']} neurons "
                f"in {s['cores']} cores on {s['chips']} chip(s); the board has "
                f"{s['limits']['neurons']} neurons in {s['limits']['cores']} cores on "
                f"{s['limits']['chips']} chip(s)")
        if self.ok:
            return f"{head}\nOK: no violations"
        lines = [f"{head}\n{len(self.violations)} violation(s) of {len(self.by_rule())} rule(s)"]
        for rule, group in self.by_rule().items():
            lines.append(f"{rule}: {len(group)} violation(s)")
            for v in group[:max_per_rule]:
                lines.append(f"  {rule}: {v.message}")
            if len(group) > max_per_rule:
                lines.append(f"  ... and {len(group) - max_per_rule} more")
            for hint in dict.fromkeys(v.hint for v in group):
                lines.append(f"  hint: {hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# --------------------------------------------------------------------------- the check
def check(graph: EIGraph, target: Target) -> DRCReport:
    """Check every design rule of ``target`` on ``graph`` and collect every violation."""
    graph.validate()
    pops = {p.name: p for p in graph.populations}
    neuron_pops = [p for p in graph.populations if p.role != "input" and p.size > 0]
    violations: list[Violation] = []
    per_pop: dict[str, dict[str, Any]] = {}
    npc = target.neurons_per_core
    bias_violations = _bias_violations(neuron_pops, npc)  # GraphError on a malformed bias
    groups = parameter_groups(graph, npc)
    group_of = {name: g for g in groups for name in g.populations}
    group_heard: dict[int, dict[str, np.ndarray]] = {g.id: {} for g in groups}

    fan_in_violations: list[Violation] = []
    tag_violations: list[Violation] = []
    for pop in neuron_pops:
        group = group_of[pop.name]
        by_dendrite: dict[str, np.ndarray] = {}
        for kind, count in _fan_in(graph, pops, pop).items():
            dendrite = target.dendrite(kind)
            by_dendrite[dendrite] = by_dendrite.get(dendrite, 0) + count
        total = sum(by_dendrite.values())
        heard: dict[str, np.ndarray] = {}
        for proj in graph.projections_into(pop.name):
            mask = _source_mask(proj, pops[proj.source], pop)
            heard[proj.source] = heard[proj.source] | mask if proj.source in heard else mask
        union = group_heard[group.id]
        for name, mask in heard.items():
            union[name] = union[name] | mask if name in union else mask
        cores = math.ceil(pop.size / npc)
        spanned = _cores_spanned(pop, group, npc)
        sources = int(sum(int(np.count_nonzero(m)) for m in heard.values()))
        tags_per_core = math.ceil(sources / spanned)
        worst = int(np.argmax(total))
        values, counts = np.unique(total, return_counts=True)
        per_pop[pop.name] = {
            "layer": pop.layer, "role": pop.role, "shape": list(pop.shape),
            "neurons": pop.size, "cores": cores, "group": group.id,
            "cores_spanned_max": spanned,
            "fan_in": {"max": int(total[worst]), "worst_neuron": worst,
                       "worst_position": _position(pop, worst),
                       "worst_by_dendrite": {d: int(c[worst]) for d, c in by_dendrite.items()},
                       "mean": float(total.mean()),
                       "histogram": {"values": values.tolist(), "counts": counts.tolist()}},
            "sources": sources, "tags_per_core_min": tags_per_core,
        }
        limit = target.cam_entries_per_neuron
        over = np.flatnonzero(total > limit)
        if over.size:
            parts = " + ".join(f"{int(c[worst])} {d.upper()}" for d, c in by_dendrite.items()
                               if c[worst])
            fan_in_violations.append(Violation(
                "fan-in", pop.layer, pop.name, worst, int(total[worst]), limit,
                f"train with a fan-in budget: recipe target.fan_in (K_in + 2*K_inh <= {limit})",
                f"{over.size} neuron(s) of {_where(pop)} exceed {limit} CAM entries (worst "
                f"neuron {worst}{_at(pop, worst)} needs {int(total[worst])} = {parts})",
                neurons=over, needs=total[over]))
        if tags_per_core > target.tags:
            tag_violations.append(Violation(
                "tags", pop.layer, pop.name, None, tags_per_core, target.tags, _TAGS_HINT,
                f"{_where(pop)} hears {sources} distinct sources over at most {spanned} "
                f"core(s): some core needs at least {tags_per_core} tags, limit {target.tags}"))

    per_group: list[dict[str, Any]] = []
    flagged = {v.population for v in tag_violations}
    for group in groups:
        sources = int(sum(int(np.count_nonzero(m)) for m in group_heard[group.id].values()))
        tags_per_core = math.ceil(sources / group.cores)
        per_group.append({**group.to_dict(), "sources": sources,
                          "tags_per_core_min": tags_per_core})
        if tags_per_core > target.tags and not flagged & set(group.populations):
            layers = ", ".join(dict.fromkeys(pops[n].layer for n in group.populations))
            tag_violations.append(Violation(
                "tags", layers, ", ".join(group.populations), None, tags_per_core, target.tags,
                _TAGS_HINT,
                f"parameter group {group.id} ({', '.join(group.populations)}) hears {sources} "
                f"distinct sources over its {group.cores} core(s): some core needs at least "
                f"{tags_per_core} tags, limit {target.tags}"))

    neurons = sum(p.size for p in neuron_pops)
    cores = sum(g.cores for g in groups)
    chips = math.ceil(cores / target.cores_per_chip)
    violations += fan_in_violations
    resize = "reduce widths or use --chips N (a board with more chips)"
    shared = "; ".join(f"group {g.id} ({g.role}: {', '.join(g.populations)}) {g.neurons} neurons "
                       f"-> {g.cores} core(s)" for g in groups)
    for rule, need, limit, what in (
            ("neurons", neurons, target.neurons_per_board, "neurons"),
            ("cores", cores, target.cores_per_board,
             f"cores (a core is a parameter group; populations of the same role, params and "
             f"bias share cores: {shared})"),
            ("chips", chips, target.chips_per_board, "chips")):
        if need > limit:
            violations.append(Violation(rule, "", "", None, need, limit, resize,
                                        f"the graph needs {need} {what}, the board has {limit}"))
    violations += tag_violations
    violations += _io_violations(graph, pops)
    violations += bias_violations

    in_pop = pops.get(graph.input_settings.population)
    summary = {
        "graph": graph.name, "target": target.name,
        "neurons": neurons, "cores": cores, "chips": chips,
        "cores_unshared": sum(per_pop[p.name]["cores"] for p in neuron_pops),
        "input_channels": in_pop.size if in_pop is not None else 0,
        "limits": {"neurons": target.neurons_per_board, "cores": target.cores_per_board,
                   "chips": target.chips_per_board, "neurons_per_core": npc,
                   "cam_entries": target.cam_entries_per_neuron, "tags": target.tags},
        "populations": per_pop,
        "groups": per_group,
        "violations": _count_by_rule(violations),
    }
    return DRCReport(violations, summary)


_TAGS_HINT = ("fewer sources per population: a sparser or narrower previous layer (recipe "
              "target.fan_in), or smaller populations")


def _cores_spanned(pop: Population, group: ParameterGroup, npc: int) -> int:
    """The most cores the placer spreads ``pop`` over (module doc, rule ``tags``)."""
    alone = math.ceil(pop.size / npc)
    if group.bias is None or pop.name == group.populations[0]:
        return alone  # starts on a fresh core
    return min(group.cores, 1 + math.ceil((pop.size - 1) / npc))


def _count_by_rule(violations: Sequence[Violation]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in violations:
        counts[v.rule] = counts.get(v.rule, 0) + 1
    return counts


def _io_violations(graph: EIGraph, pops: dict[str, Population]) -> list[Violation]:
    found: list[Violation] = []
    settings, inputs = graph.readout_settings, graph.input_settings
    readout = pops.get(settings.population)
    mode = settings.mode
    if mode != "spiking":
        found.append(Violation(
            "spiking-readout", readout.layer if readout else "", readout.name if readout else "",
            None, 0, 0, "recipe target.spiking_readout: true",
            f"the readout is {mode!r}: the chip cannot output a current; the output layer must be "
            "spiking neurons whose counts the host decodes"))
    encoding = inputs.encoding
    if encoding not in SPIKE_ENCODINGS:
        source = pops.get(inputs.population)
        found.append(Violation(
            "spike-input", source.layer if source else "", source.name if source else "",
            None, 0, 0, "recipe target.input_encoding: if",
            f"the input encoding is {encoding!r}: the host can only send spikes "
            f"({', '.join(sorted(SPIKE_ENCODINGS))})"))
    for pop in graph.populations:
        response = pop.params.get("response", "identity")
        if pop.role == "inh" and response != "floor":
            found.append(Violation(
                "spiking-inhibition", pop.layer, pop.name, None, 0, 0,
                "recipe model.options.inhibitory: floor",
                f"{_where(pop)} responds with {response!r}: an interneuron on the chip sends "
                "spikes, not its current (train with the spike-count response 'floor')"))
    return found


def _bias_violations(neuron_pops: Sequence[Population], npc: int) -> list[Violation]:
    """A bias must be constant inside each core (channel-major order, ``npc`` to a core)."""
    found: list[Violation] = []
    for pop in neuron_pops:
        if "bias" not in pop.arrays:
            continue
        bias = _per_neuron(pop, "bias").astype(np.float64)
        cores = math.ceil(pop.size / npc)
        chunks = np.pad(bias, (0, cores * npc - pop.size), mode="edge").reshape(cores, npc)
        tol = _BIAS_RTOL * max(1.0, float(np.abs(bias).max(initial=0.0)))
        distinct = np.count_nonzero(np.diff(np.sort(chunks, axis=1), axis=1) > tol, axis=1) + 1
        varying = np.flatnonzero(distinct > 1)
        if not varying.size:
            continue
        worst_core = int(varying[np.argmax(distinct[varying])])
        core_of = np.arange(pop.size) // npc
        neurons = np.flatnonzero(np.isin(core_of, varying))
        found.append(Violation(
            "per-neuron-bias", pop.layer, pop.name, worst_core * npc,
            int(distinct[worst_core]), 1,
            "tie the bias per core during training: recipe target.bias: none (or per_core)",
            f"the bias of {_where(pop)} varies inside {varying.size} of its {cores} core(s) (up to "
            f"{int(distinct[worst_core])} values in the core starting at neuron "
            f"{worst_core * npc}); a core holds one DC bias", neurons=neurons))
    return found


# --------------------------------------------------------------------------- counting
def fan_in(graph: EIGraph, population: str) -> dict[str, np.ndarray]:
    """CAM entries each neuron of ``population`` needs, by projection kind (``exc``, ``sub``,
    ``div``: AMPA, GABA, SHUNT): one per non-zero synapse, pooled sources counted k*k times.

    Exact per neuron, border neurons of conv maps included, without unrolling any projection.
    """
    pops = {p.name: p for p in graph.populations}
    return _fan_in(graph, pops, graph.population(population))


def _fan_in(graph: EIGraph, pops: dict[str, Population], pop: Population
            ) -> dict[str, np.ndarray]:
    counts = {kind: np.zeros(pop.size, np.int64) for kind in ("exc", "sub", "div")}
    for proj in graph.projections_into(pop.name):
        counts[proj.kind] += _projection_fan_in(proj, pops[proj.source], pop)
    return counts


def _projection_fan_in(proj: Projection, src: Population, tgt: Population) -> np.ndarray:
    """CAM entries each target neuron spends on ``proj``: its non-zero synapses, per neuron."""
    pool = _pool(proj, src)
    w = np.asarray(proj.weight)
    if proj.op == "dense":
        if w.ndim != 2 or w.shape[0] != tgt.size:
            raise _shape_error(proj, f"dense weight {w.shape} does not have {tgt.size} rows")
        per = np.count_nonzero(w, axis=1).astype(np.int64)
    elif proj.op == "pointwise":
        pixels = _pixels(tgt, w.shape[0], proj)
        per = np.repeat(np.count_nonzero(w, axis=1).astype(np.int64), pixels)
    elif proj.op == "conv":
        per = _conv_fan_in(proj, w, src, tgt, pool).reshape(-1)
    elif proj.op == "sparse":
        targets = np.asarray(proj.indices)[w != 0, 0]
        per = np.bincount(targets, minlength=tgt.size).astype(np.int64)
    else:
        raise _shape_error(proj, f"unknown op {proj.op!r}")
    if per.size != tgt.size:
        raise _shape_error(proj, f"maps onto {per.size} neurons, the target has {tgt.size}")
    return per * (pool * pool)


def _conv_fan_in(proj: Projection, w: np.ndarray, src: Population, tgt: Population,
                 pool: int) -> np.ndarray:
    """Exact per-neuron conv fan-in without unrolling: the non-zero taps that land inside the
    (pooled) input map, border neurons included. ``(C_out, H_out, W_out)``."""
    valid_y, valid_x = _valid_taps(proj, w, src, tgt, pool)
    taps = np.count_nonzero(w, axis=1).astype(np.int64)  # (C_out, k, k): non-zero over C_in
    # sum over (ky, kx) of taps[c, ky, kx] * valid_y[y, ky] * valid_x[x, kx]
    return valid_y @ (taps @ valid_x.T)


def _valid_taps(proj: Projection, w: np.ndarray, src: Population, tgt: Population,
                pool: int) -> tuple[np.ndarray, np.ndarray]:
    """``valid_y[y, ky]``: whether tap row ky of output row y reads a real (unpadded) input row;
    ``valid_x`` the same for columns."""
    if w.ndim != 4 or len(src.shape) != 3 or len(tgt.shape) != 3:
        raise _shape_error(proj, f"conv needs a (C_out, C_in, k, k) weight between (C, H, W) "
                                 f"maps, got {w.shape} from {src.shape} to {tgt.shape}")
    c_out, c_in, kh, kw = w.shape
    if c_out != tgt.shape[0] or c_in != src.shape[0]:
        raise _shape_error(proj, f"conv weight {w.shape} does not join {src.shape[0]} to "
                                 f"{tgt.shape[0]} channels")
    stride = _pair(proj.attrs.get("stride", 1))
    dilation = _pair(proj.attrs.get("dilation", 1))
    padding = _padding(proj.attrs.get("padding", 0), (kh, kw), dilation)
    h_in, w_in = src.shape[1] // pool, src.shape[2] // pool
    axes = []
    for size_out, size_in, k, s, p, d in ((tgt.shape[1], h_in, kh, stride[0], padding[0],
                                           dilation[0]),
                                          (tgt.shape[2], w_in, kw, stride[1], padding[1],
                                           dilation[1])):
        rows = np.arange(size_out)[:, None] * s - p + np.arange(k)[None, :] * d
        axes.append(((rows >= 0) & (rows < size_in)).astype(np.int64))
    return axes[0], axes[1]


def _source_mask(proj: Projection, src: Population, tgt: Population) -> np.ndarray:
    """Which neurons of ``src`` reach at least one neuron of ``tgt`` through ``proj``."""
    pool = _pool(proj, src)
    w = np.asarray(proj.weight)
    if proj.op == "dense":
        pooled = np.any(w != 0, axis=0)
    elif proj.op == "pointwise":
        channels = np.any(w != 0, axis=0)
        pooled = np.repeat(channels, _pixels(tgt, w.shape[0], proj))
    elif proj.op == "conv":
        valid_y, valid_x = _valid_taps(proj, w, src, tgt, pool)
        h_in, w_in = src.shape[1] // pool, src.shape[2] // pool
        read_y = _read_rows(proj, valid_y, h_in, stride_axis=0)  # (k, H_in)
        read_x = _read_rows(proj, valid_x, w_in, stride_axis=1)
        taps = np.any(w != 0, axis=0).astype(np.int64)  # (C_in, k, k)
        pooled = (read_y.T @ (taps @ read_x)) > 0  # (C_in, H_in, W_in)
    elif proj.op == "sparse":
        pooled = np.zeros(src.size // (pool * pool), bool)
        pooled[np.asarray(proj.indices)[w != 0, 1]] = True
    else:
        raise _shape_error(proj, f"unknown op {proj.op!r}")
    if pool == 1:
        if pooled.size != src.size:
            raise _shape_error(proj, f"reads {pooled.size} source neurons, the source has "
                                     f"{src.size}")
        return pooled.reshape(-1)
    c, h, wd = src.shape
    hp, wp = h // pool, wd // pool
    if pooled.size != c * hp * wp:
        raise _shape_error(proj, f"reads {pooled.size} pooled source neurons, the source pooled "
                                 f"by {pool} has {c * hp * wp}")
    full = np.zeros(src.shape, bool)
    full[:, :hp * pool, :wp * pool] = (pooled.reshape(c, hp, wp)
                                       .repeat(pool, axis=1).repeat(pool, axis=2))
    return full.reshape(-1)


def _read_rows(proj: Projection, valid: np.ndarray, size_in: int, stride_axis: int) -> np.ndarray:
    """``read[k, i]``: whether tap k of some output reads input row i."""
    size_out, k = valid.shape
    s = _pair(proj.attrs.get("stride", 1))[stride_axis]
    d = _pair(proj.attrs.get("dilation", 1))[stride_axis]
    p = _padding(proj.attrs.get("padding", 0), (k, k), (d, d))[stride_axis]
    rows = np.arange(size_out)[:, None] * s - p + np.arange(k)[None, :] * d
    read = np.zeros((k, size_in), np.int64)
    out_idx, tap = np.nonzero(valid)
    read[tap, rows[out_idx, tap]] = 1
    return read


# --------------------------------------------------------------------------- small helpers
def _pool(proj: Projection, src: Population) -> int:
    pool = int(proj.attrs.get("pool") or 1)
    if pool < 1 or (pool > 1 and len(src.shape) != 3):
        raise _shape_error(proj, f"pool {pool} needs a (C, H, W) source map, got {src.shape}")
    return pool


def _pixels(tgt: Population, channels: int, proj: Projection) -> int:
    if tgt.shape[0] != channels or tgt.size % channels:
        raise _shape_error(proj, f"pointwise weight with {channels} rows does not fit target "
                                 f"shape {tgt.shape}")
    return tgt.size // channels


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def _padding(value: Any, kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    if value == "valid":
        return 0, 0
    if value == "same":
        return dilation[0] * (kernel[0] - 1) // 2, dilation[1] * (kernel[1] - 1) // 2
    return _pair(value)


def _per_neuron(pop: Population, key: str) -> np.ndarray:
    """A per-channel (maps), per-neuron or scalar array of a population, one value per neuron."""
    value = np.asarray(pop.arrays[key]).reshape(-1)
    if value.size == pop.size:
        return value
    if value.size == 1:
        return np.repeat(value, pop.size)
    if value.size == pop.channels:
        return np.repeat(value, pop.size // pop.channels)
    raise GraphError(f"population {pop.name}: {key} has {value.size} values; expected 1, "
                     f"{pop.channels} (per channel) or {pop.size} (per neuron)")


def _where(pop: Population) -> str:
    tag = _ROLE_TAG.get(pop.role, pop.role)
    return f"layer {pop.layer} {tag}" if pop.layer else f"population {pop.name}"


def _position(pop: Population, neuron: int) -> list[int]:
    return [int(i) for i in np.unravel_index(neuron, pop.shape)]


def _at(pop: Population, neuron: int) -> str:
    if len(pop.shape) != 3:
        return ""
    c, y, x = _position(pop, neuron)
    return f" (channel {c}, y {y}, x {x})"


def _shape_error(proj: Projection, message: str) -> GraphError:
    return GraphError(f"projection {proj.name} ({proj.source} -> {proj.target}): {message}")
