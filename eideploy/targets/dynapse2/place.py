"""Placement: which (chip, core, neuron slot) each neuron of an E-I graph occupies on DYNAP-SE2.

A core is a parameter group (spec/dynapse2.md §3.1): its ~56 bias currents (leak, threshold, DC,
dendrite gains, the four base weights) are shared by its 256 neurons, and there are no per-neuron
time constants, thresholds or biases. So:

* E and I populations never share a core (interneurons are fast-spiking, E cells are LIF);
* populations share cores only when role and ``params`` are identical and their bias is the same
  single value (one DC current per core);
* a population whose bias varies (tied per core during training, channel-major, ``neurons_per_core``
  to a core, as the DRC checks it) takes whole cores of its own, aligned on core boundaries, so
  that each of its cores holds exactly one of its bias values.

Algorithm. Populations fall into parameter groups. Walking the populations in graph order, each
one first fills the free slots of its group's last core, then opens new cores at the next free
core position of the board (cores are numbered chip by chip). So a group of ``N`` neurons takes
``ceil(N / neurons_per_core)`` cores, the fewest possible (groups cannot share cores, and any
neuron of a group may sit in any of its cores), and the board needs ``ceil(cores /
cores_per_chip)`` chips, also the fewest; and consecutive layers sit on the same or neighbouring
cores and chips, which keeps a source neuron's destinations within few chips (one SRAM entry per
destination chip, 3 usable). Packing whole groups one after the other instead would put, say,
every layer's interneurons on the first chip and make each E layer's fan-out span all chips. A
population whose new cores fit one chip but would straddle a chip boundary starts on a fresh chip
when the minimum chip count leaves room for it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...graph.ir import EIGraph, Population
from .target import Target

__all__ = ["MappingError", "ParameterGroup", "CoreAssignment", "Placement", "place",
           "parameter_groups", "population_bias", "BIAS_RTOL"]

#: Relative tolerance under which bias values count as one DC value (the DRC's tolerance).
BIAS_RTOL = 1e-6


class MappingError(ValueError):
    """A graph that passed the design-rule check but cannot be placed, quantized or routed."""


@dataclass
class ParameterGroup:
    """Populations that may share cores: same role, same ``params``, same single bias value.

    ``bias`` is that shared value, or ``None`` for a population whose bias varies from core to
    core (a group of its own, placed on whole, aligned cores).
    """

    id: int
    role: str
    params: dict[str, Any]
    populations: list[str]
    bias: float | None
    neurons: int
    cores: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "params": self.params,
                "populations": list(self.populations), "bias": self.bias,
                "neurons": self.neurons, "cores": self.cores}


@dataclass
class CoreAssignment:
    """One used core: its parameter group and the population slices laid into its slots.

    ``slices[i] = (population, start, stop)`` occupies neuron slots
    ``offsets[i] .. offsets[i] + stop - start`` of the core.
    """

    chip: int
    core: int
    group: int
    role: str
    params: dict[str, Any]
    slices: list[tuple[str, int, int]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        return (self.chip, self.core)

    @property
    def used(self) -> int:
        """Neuron slots in use."""
        return sum(stop - start for _, start, stop in self.slices)

    def to_dict(self) -> dict[str, Any]:
        return {"chip": self.chip, "core": self.core, "group": self.group, "role": self.role,
                "params": self.params,
                "populations": [{"population": p, "start": a, "stop": b, "offset": o}
                                for (p, a, b), o in zip(self.slices, self.offsets, strict=True)]}


@dataclass
class Placement:
    """Where every neuron sits: the used cores and, per population, an ``(n, 3)`` int array of
    ``(chip, core, neuron slot)`` (``location``). Input populations are off chip (the host)."""

    target: str
    cores_per_chip: int
    neurons_per_core: int
    groups: list[ParameterGroup]
    cores: list[CoreAssignment]
    location: dict[str, np.ndarray]

    @property
    def chips_used(self) -> list[int]:
        return sorted({c.chip for c in self.cores})

    def core(self, chip: int, core: int) -> CoreAssignment:
        for assignment in self.cores:
            if assignment.key == (chip, core):
                return assignment
        raise KeyError(f"core ({chip}, {core}) is not used by this placement")

    def core_ids(self, population: str) -> np.ndarray:
        """Board-wide core number ``chip * cores_per_chip + core`` of each neuron."""
        loc = self.location[population]
        return loc[:, 0] * self.cores_per_chip + loc[:, 1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: groups, cores and their slices (``location`` follows from the slices)."""
        return {"target": self.target, "cores_per_chip": self.cores_per_chip,
                "neurons_per_core": self.neurons_per_core,
                "chips_used": self.chips_used, "cores_used": len(self.cores),
                "groups": [g.to_dict() for g in self.groups],
                "cores": [c.to_dict() for c in self.cores]}


def population_bias(pop: Population) -> np.ndarray:
    """The bias of every neuron (float64; 0 without a ``bias`` array), per-channel arrays
    repeated over each channel's pixels (channel-major order)."""
    try:
        return pop.per_neuron("bias", 0.0)
    except ValueError as exc:
        raise MappingError(str(exc)) from None


def _uniform(values: np.ndarray) -> bool:
    if values.size == 0:
        return True
    tol = BIAS_RTOL * max(1.0, float(np.abs(values).max()))
    return float(values.max() - values.min()) <= tol


def parameter_groups(graph: EIGraph, neurons_per_core: int) -> list[ParameterGroup]:
    """The populations that may share cores, in graph order, each with the cores it needs.

    The single definition of a parameter group (module doc): the placer lays out these groups
    and the design-rule check counts cores and chips with them, so the two always agree. A group
    of ``N`` neurons takes ``ceil(N / neurons_per_core)`` cores. Populations are taken as given
    (no validation); raises :class:`MappingError` for a bias of the wrong size.
    """
    npc = neurons_per_core
    groups: dict[tuple[Any, ...], ParameterGroup] = {}
    for pop in graph.populations:
        if pop.role == "input" or pop.size == 0:
            continue
        bias = population_bias(pop)
        params = json.dumps(pop.params, sort_keys=True, default=str)
        value: float | None = (float(bias.min() / 2 + bias.max() / 2) if _uniform(bias)
                               else None)
        # A varying bias is held core by core: that population cannot share its cores.
        key = (pop.role, params, value) if value is not None else (pop.role, params, pop.name)
        if key not in groups:
            groups[key] = ParameterGroup(len(groups), pop.role, dict(pop.params), [], value, 0, 0)
        group = groups[key]
        group.populations.append(pop.name)
        group.neurons += pop.size
    for group in groups.values():
        group.cores = math.ceil(group.neurons / npc)
    return list(groups.values())


def place(graph: EIGraph, target: Target) -> Placement:
    """Assign every on-chip neuron of ``graph`` a (chip, core, slot) on ``target``.

    Deterministic (no randomness: graph order decides). Raises :class:`MappingError` with the
    cores and neurons needed against those available when the graph does not fit the board.
    """
    graph.validate()
    npc, cpc = target.neurons_per_core, target.cores_per_chip
    groups = parameter_groups(graph, npc)
    total_cores = sum(g.cores for g in groups)
    neurons = sum(g.neurons for g in groups)
    if total_cores > target.cores_per_board:
        detail = "; ".join(f"group {g.id} ({g.role}: {', '.join(g.populations)}) {g.neurons} "
                           f"neurons -> {g.cores} core(s)" for g in groups)
        raise MappingError(
            f"graph {graph.name} does not fit target {target.name}: it needs {total_cores} "
            f"cores ({neurons} neurons; a core is a parameter group) but the board has "
            f"{target.cores_per_board} cores ({target.neurons_per_board} neurons); {detail}")

    chips_needed = math.ceil(total_cores / cpc)
    slack = chips_needed * cpc - total_cores  # cores that may be left empty at chip ends
    group_of = {name: g for g in groups for name in g.populations}
    location: dict[str, np.ndarray] = {}
    cores: list[CoreAssignment] = []
    open_core: dict[int, CoreAssignment] = {}  # a group's last core, while it has free slots
    chip, free = 0, cpc
    for pop in graph.populations:
        if pop.name not in group_of:
            if pop.role != "input":
                location[pop.name] = np.zeros((0, 3), dtype=np.int64)  # an empty population
            continue
        group = group_of[pop.name]
        rows = np.zeros((pop.size, 3), dtype=np.int64)
        start = 0
        # First the free slots of the group's last core: a group fills its cores one by one,
        # so it takes ceil(neurons / neurons_per_core) cores whatever the interleaving.
        current = open_core.pop(group.id, None)
        fresh = math.ceil((pop.size - (npc - current.used if current else 0)) / npc)
        if 0 < fresh <= cpc and free < cpc and fresh > free and free <= slack:
            slack -= free  # start on a fresh chip: the population's new cores share one chip
            chip, free = chip + 1, cpc
        while start < pop.size:
            if current is None or current.used == npc:
                current = CoreAssignment(chip, cpc - free, group.id, group.role,
                                         dict(group.params))
                cores.append(current)
                free -= 1
                if free == 0:
                    chip, free = chip + 1, cpc
            offset = current.used
            stop = min(pop.size, start + npc - offset)
            current.slices.append((pop.name, start, stop))
            current.offsets.append(offset)
            rows[start:stop, 0], rows[start:stop, 1] = current.chip, current.core
            rows[start:stop, 2] = np.arange(offset, offset + stop - start)
            start = stop
        if current is not None and current.used < npc and group.bias is not None:
            open_core[group.id] = current
        location[pop.name] = rows
    cores.sort(key=lambda c: c.key)
    return Placement(target.name, cpc, npc, groups, cores, location)
