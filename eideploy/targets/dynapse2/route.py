"""Routing on DYNAP-SE2: tags, SRAM destinations (fan-out) and CAM entries (fan-in).

How a spike travels on the chip (spec/dynapse2.md §1): a neuron's SRAM entries each name one
destination chip (``x_hop``, ``y_hop`` relative to the sender's chip), a 4-bit mask of that chip's
cores and an 11-bit tag; the event is broadcast to every neuron of the masked cores, and a neuron
whose CAM holds an entry with that tag receives it on the entry's dendrite (AMPA / GABA / SHUNT)
with the entry's 4-bit weight mask. Hence:

* **tags**: every spiking source gets one tag: input channels (sent by the host) and every on-chip
  neuron with outgoing synapses; readout neurons too, since the host tells their spikes apart by
  tag. Sources reaching the same core need distinct tags (readout neurons all reach the host).
  When all sources fit the tag space they get distinct tags in graph order; otherwise tags are
  reused across sources with disjoint destination cores by greedy colouring (sources in graph
  order, each takes the lowest tag free on every core it reaches).
* **SRAM** (fan-out): one entry per destination chip, covering any subset of its cores; at most
  ``target.usable_sram`` (3: one of the 4 is kept for monitoring from the host), hops within
  ``target.hop_range``.
* **CAM** (fan-in): one entry per non-zero synapse (tag, dendrite from the projection kind, weight
  mask, no STP, delay class 0), at most ``target.cam_entries_per_neuron`` (64), all dendrites
  together: an interneuron that inhibits an E cell both ways costs it two entries (GABA + SHUNT).

Chip positions (``chip_positions``) follow the target's ``chip_layout``: ``"row"`` (the default,
chip k at (k, 0)) is rockpool's ``CHIP_POS`` (``rockpool/devices/dynapse/lookup/defaults.py``:
FPGA at (0, 0), chips 0..3 at (1..4, 0)) and what public DYNAP-SE2 scripts assume (an event for
chip k from chip 0 carries ``x_hop = k``); ``"grid"`` lays them on the smallest square grid,
row-major. SRAM hops are destination minus source position (rockpool's
``WeightAllocator.manhattan``), so only relative positions matter.

The target's ``control_tag`` (2047 on DYNAP-SE2: rockpool's ``DynapseSamna`` bounces it off the
FPGA to read the clock and mark the end of a batch) is never allocated to a source.

Every violated limit (CAM, SRAM, hops, tags per core) is collected and reported at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...graph.readout import readout_copies
from .place import MappingError, Placement
from .quantize import QuantizedGraph
from .target import Target

__all__ = ["CamTable", "Routing", "route", "chip_positions", "layout_positions"]


def layout_positions(layout: str, chips: int) -> list[tuple[int, int]]:
    """``(x, y)`` of chips ``0..chips-1`` in a ``"row"`` or on a square ``"grid"`` (module doc)."""
    if layout == "row":
        return [(chip, 0) for chip in range(chips)]
    if layout != "grid":
        raise ValueError(f"chip layout {layout!r}: one of row, grid")
    columns = max(1, math.ceil(math.sqrt(chips)))
    return [(chip % columns, chip // columns) for chip in range(chips)]


def chip_positions(target: Target) -> list[tuple[int, int]]:
    """``(x, y)`` of every chip on the board, by the target's ``chip_layout`` (module doc)."""
    return layout_positions(target.chip_layout, target.chips_per_board)


@dataclass
class CamTable:
    """The CAM entries of one population's neurons, one row per entry, grouped by neuron.

    Neuron ``i``'s entries are rows ``offsets[i]:offsets[i + 1]``, in projection order then
    source order. ``projection`` indexes the quantized graph's projections, ``source`` is the
    sending neuron's index in that projection's source population.
    """

    neuron: np.ndarray
    tag: np.ndarray
    dendrite: np.ndarray  # dendrite names ("ampa", "gaba", "shunt")
    weight_mask: np.ndarray  # uint8
    projection: np.ndarray
    source: np.ndarray
    offsets: np.ndarray

    @property
    def count(self) -> np.ndarray:
        """CAM entries used by each neuron."""
        return np.diff(self.offsets)


@dataclass
class Routing:
    """Tags, CAM tables, SRAM core masks and the host's channel maps.

    ``tags[population]``: the tag of every neuron (-1: sends nothing). ``sram[population]``:
    ``(n, chips)`` core masks per on-chip neuron (0: no entry for that chip), each non-zero one an
    SRAM entry; ``chip_of[population]`` the chip each sender sits on (hops are relative to it).
    ``input_channels``: per input neuron its tag and the ``(chip, core_mask)`` pairs the
    host must address. ``readout_channels``: per class its ``(chip, core, neuron, tag)``.
    """

    tags: dict[str, np.ndarray]
    cam: dict[str, CamTable]
    sram: dict[str, np.ndarray]
    chip_positions: list[tuple[int, int]]
    input_channels: list[dict[str, Any]]
    readout_channels: list[dict[str, Any]]
    tag_mode: str
    chip_of: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def sram_entries(self, population: str) -> list[list[dict[str, int]]]:
        """Every neuron's SRAM entries ``{chip, x_hop, y_hop, core_mask, tag}`` (hops relative to
        the neuron's own chip), ordered by destination chip."""
        rows = self.sram[population].tolist()
        tags = self.tags[population].tolist()
        own = self.chip_of[population].tolist()
        positions = self.chip_positions
        return [[{"chip": d, "x_hop": positions[d][0] - positions[c][0],
                  "y_hop": positions[d][1] - positions[c][1], "core_mask": m, "tag": t}
                 for d, m in enumerate(row) if m]
                for row, t, c in zip(rows, tags, own, strict=True)]


def route(qgraph: QuantizedGraph, placement: Placement, target: Target) -> Routing:
    """Allocate tags, SRAM and CAM entries for the quantized graph on its placement.

    Raises :class:`MappingError` listing every neuron group over a CAM, SRAM, hop or tag limit.
    """
    graph = qgraph.graph
    cpc, chips = target.cores_per_chip, target.chips_per_board
    n_cores = chips * cpc
    host = n_cores  # pseudo-destination: readout spikes go to the host
    positions = chip_positions(target)
    offset: dict[str, int] = {}
    total = 0
    for pop in graph.populations:
        offset[pop.name] = total
        total += pop.size
    on_chip = [p for p in graph.populations if p.role != "input" and p.size > 0]
    core_id = {p.name: placement.core_ids(p.name) for p in graph.populations
               if p.role != "input"}
    if on_chip and max(int(core_id[p.name].max()) for p in on_chip) >= n_cores:
        raise MappingError(f"the placement uses cores beyond target {target.name}'s "
                           f"{n_cores} cores (it was made for another target)")

    # reach[s, c]: source neuron s (global number) sends to core c
    reach = np.zeros((total, n_cores + 1), dtype=bool)
    for proj in graph.projections:
        src = offset[proj.source] + proj.indices[:, 1]
        reach[src, core_id[proj.target][proj.indices[:, 0]]] = True
    readout = graph.readout_settings.population
    readout_pop = next((p for p in on_chip if p.name == readout), None)
    if readout_pop is not None:
        reach[offset[readout]:offset[readout] + readout_pop.size, host] = True

    problems: list[str] = []
    problems += _sram_problems(reach, on_chip, offset, placement, target, positions)
    cam = {p.name: _cam_table(qgraph, p.name, target) for p in on_chip}
    problems += _cam_problems(cam, on_chip, target)
    per_core = reach.sum(axis=0)
    n_tags = len(target.allocatable_tags)
    for c in np.flatnonzero(per_core[:n_cores] > n_tags):
        problems.append(f"tags: core ({c // cpc}, {c % cpc}) hears {int(per_core[c])} distinct "
                        f"sources, more than the {n_tags} tags (sources reaching one core "
                        "need distinct tags): fewer or sparser inputs to its populations")
    if per_core[host] > n_tags:
        problems.append(f"tags: the readout has {int(per_core[host])} neurons, more than the "
                        f"{n_tags} tags the host can tell apart")
    if problems:
        raise MappingError(f"graph {graph.name} cannot be routed on target {target.name}: "
                           f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))

    tags, mode = _assign_tags(reach, target, cpc)
    src_offset = np.array([offset[p.source] for p in graph.projections], dtype=np.int64)
    for table in cam.values():
        if table.tag.size:
            table.tag = tags[src_offset[table.projection] + table.source]

    masks = {p.name: _core_masks(reach[offset[p.name]:offset[p.name] + p.size, :n_cores],
                                 chips, cpc) for p in graph.populations}
    pop_tags = {p.name: tags[offset[p.name]:offset[p.name] + p.size] for p in graph.populations}
    inputs = []
    for pop in graph.populations:
        if pop.role != "input":
            continue
        rows = masks[pop.name].tolist()
        for i, (tag, row) in enumerate(zip(pop_tags[pop.name].tolist(), rows, strict=True)):
            inputs.append({"population": pop.name, "channel": i,
                           "tag": tag if tag >= 0 else None,
                           "destinations": [{"chip": d, "core_mask": m}
                                            for d, m in enumerate(row) if m]})
    readouts = []
    if readout_pop is not None:
        loc = placement.location[readout].tolist()
        copies = readout_copies(graph)  # several readout neurons per class, class-major
        for k, ((chip, core, neuron), tag) in enumerate(
                zip(loc, pop_tags[readout].tolist(), strict=True)):
            readouts.append({"class": k // copies, "chip": chip, "core": core,
                             "neuron": neuron, "tag": tag})

    used = tags[tags >= 0]
    cam_entries = sum(int(t.offsets[-1]) for t in cam.values())
    sram_entries = sum(int(np.count_nonzero(masks[p.name])) for p in on_chip)
    stats = {"sources": int(np.count_nonzero(reach.any(axis=1))),
             "tags_used": int(np.unique(used).size), "tag_mode": mode,
             "max_sources_per_core": int(per_core[:n_cores].max(initial=0)),
             "cam_entries": cam_entries, "sram_entries": sram_entries}
    return Routing(pop_tags, cam, {p.name: masks[p.name] for p in on_chip}, positions, inputs,
                   readouts, mode, {p.name: placement.location[p.name][:, 0].copy()
                                    for p in on_chip}, stats)


def _core_masks(reach: np.ndarray, chips: int, cpc: int) -> np.ndarray:
    """``(n, chips)`` core masks (bit k = core k of that chip) from ``(n, chips * cpc)``."""
    weights = (1 << np.arange(cpc)).astype(np.int64)
    return (reach.reshape(reach.shape[0], chips, cpc) * weights).sum(axis=2)


def _sram_problems(reach: np.ndarray, on_chip: list, offset: dict[str, int],
                   placement: Placement, target: Target,
                   positions: list[tuple[int, int]]) -> list[str]:
    cpc, chips = target.cores_per_chip, target.chips_per_board
    low, high = target.hop_range
    xy = np.array(positions, dtype=np.int64)
    problems = []
    for pop in on_chip:
        rows = reach[offset[pop.name]:offset[pop.name] + pop.size, :chips * cpc]
        dest = rows.reshape(pop.size, chips, cpc).any(axis=2)  # (n, chips)
        entries = dest.sum(axis=1)
        over = np.flatnonzero(entries > target.usable_sram)
        if over.size:
            worst = int(over[np.argmax(entries[over])])
            problems.append(
                f"sram: {over.size} neuron(s) of population {pop.name} send to more than "
                f"{target.usable_sram} chips (worst neuron {worst} needs {int(entries[worst])} "
                f"SRAM entries, limit {target.usable_sram}: one per destination chip, one of "
                f"{target.sram_entries_per_neuron} kept for monitoring); keep a layer's targets "
                "on fewer chips (smaller layers or --chips)")
        src_xy = xy[placement.location[pop.name][:, 0]]  # (n, 2)
        hop = xy[None, :, :] - src_xy[:, None, :]  # (n, chips, 2)
        bad = dest & ((hop < low) | (hop > high)).any(axis=2)
        if bad.any():
            n = int(np.count_nonzero(bad.any(axis=1)))
            problems.append(f"hops: {n} neuron(s) of population {pop.name} reach chips beyond "
                            f"the hop range {low}..{high}")
    return problems


def _cam_table(qgraph: QuantizedGraph, population: str, target: Target) -> CamTable:
    """CAM rows of ``population`` (tags filled in later), grouped by neuron."""
    graph = qgraph.graph
    pop = graph.population(population)
    parts = [(i, p) for i, p in enumerate(graph.projections) if p.target == population]
    if parts:
        neuron = np.concatenate([p.indices[:, 0] for _, p in parts])
        source = np.concatenate([p.indices[:, 1] for _, p in parts])
        mask = np.concatenate([qgraph.masks[p.name] for _, p in parts]).astype(np.uint8)
        proj = np.concatenate([np.full(p.weight.size, i, dtype=np.int64) for i, p in parts])
        dendrite = np.concatenate([np.full(p.weight.size, target.dendrite(p.kind))
                                   for _, p in parts]).astype(str)
    else:
        neuron = source = proj = np.zeros(0, dtype=np.int64)
        mask = np.zeros(0, dtype=np.uint8)
        dendrite = np.zeros(0, dtype=str)
    order = np.argsort(neuron, kind="stable")  # projection order, then source, per neuron
    neuron = neuron[order]
    offsets = np.searchsorted(neuron, np.arange(pop.size + 1)).astype(np.int64)
    return CamTable(neuron, np.full(neuron.size, -1, dtype=np.int64), dendrite[order],
                    mask[order], proj[order], source[order], offsets)


def _cam_problems(cam: dict[str, CamTable], on_chip: list, target: Target) -> list[str]:
    limit = target.cam_entries_per_neuron
    problems = []
    for pop in on_chip:
        table = cam[pop.name]
        count = table.count
        over = np.flatnonzero(count > limit)
        if over.size:
            worst = int(over[np.argmax(count[over])])
            rows = slice(table.offsets[worst], table.offsets[worst + 1])
            names, counts = np.unique(table.dendrite[rows], return_counts=True)
            parts = " + ".join(f"{int(c)} {n.upper()}" for n, c in zip(names, counts,
                                                                      strict=True))
            problems.append(f"fan-in: {over.size} neuron(s) of population {pop.name} need more "
                            f"than {limit} CAM entries (worst neuron {worst} needs "
                            f"{int(count[worst])} = {parts}); train with a fan-in budget "
                            f"(recipe target.fan_in)")
    return problems


def _assign_tags(reach: np.ndarray, target: Target, cpc: int) -> tuple[np.ndarray, str]:
    """One tag per source (row of ``reach`` with any destination), -1 for the others; only
    ``target.allocatable_tags`` are given out (the control tag stays the host's)."""
    tags = np.full(reach.shape[0], -1, dtype=np.int64)
    free_tags = np.asarray(target.allocatable_tags, dtype=np.int64)
    sources = np.flatnonzero(reach.any(axis=1))
    if sources.size <= free_tags.size:
        tags[sources] = free_tags[:sources.size]
        return tags, "unique"
    used = np.zeros((reach.shape[1], free_tags.size), dtype=bool)
    for s in sources:
        dest = np.flatnonzero(reach[s])
        free = ~used[dest].any(axis=0)
        k = int(np.argmax(free))
        if not free[k]:
            counts = reach.sum(axis=0)
            worst = int(np.argmax(counts[:-1]))
            raise MappingError(
                f"tags: greedy colouring needs more than {free_tags.size} tags for "
                f"{sources.size} sources (the busiest core, ({worst // cpc}, {worst % cpc}), "
                f"hears {int(counts[worst])}); fewer sources per core: sparser or narrower "
                "layers")
        used[dest, k] = True
        tags[s] = free_tags[k]
    return tags, "coloured"
