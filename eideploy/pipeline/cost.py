"""What an inference costs: spikes, synaptic events, routed events, energy and latency.

Counted per sample from a simulator's activity and the graph's connectivity:

* **spikes** per population: the integer simulator's outputs summed over time (an interneuron's
  output is its spike count in the step; the readout's are its IF spikes, which leave the chip);
* **synaptic events** per projection and per dendrite (AMPA, GABA, SHUNT through the target's
  ``kinds`` table): every spike times its fan-out, the non-zero synapses it reaches (one CAM
  match each on the chip);
* with an export directory, **routed events** (every spike times its neuron's SRAM
  destinations in ``dynapse2.json``, every input spike times its channel's destinations) and
  **chip crossings** (the destinations on another chip than the neuron's).

On the float graph the same count is NeuroBench's *synaptic operations* (accumulates: one per
non-zero input value and non-zero synapse, whatever the value), so the two can be compared.

Energy multiplies the events by the per-event figures of ``hardware/dynapse2.toml``'s
``[energy]`` table (each with its source and range); latency is the window the board counts a
sample over: ``T`` steps of ``DT_US`` and the chip's synaptic delays (``latency_us``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..graph import EIGraph
from ..graph.execute import FloatExecutor
from ..graph.ir import Projection
from ..safefile import UnsafeFileError, load_json, printable
from ..sim.integer import IntegerSimulator
from ..targets.dynapse2.board.events import DT_US, latency_us
from ..targets.dynapse2.energy import (
    EVENT_KINDS,
    EnergyPerInference,
    EnergyTable,
    load_energy,
)
from ..targets.dynapse2.target import Target, resolve_target

__all__ = ["CostError", "ProjectionCost", "NetworkCost", "EnergyEstimate", "integer_cost",
           "float_cost", "energy_estimate", "cost_report", "variant_costs", "cost_markdown",
           "cost_line", "BATCH"]

#: Samples simulated at once while counting.
BATCH = 128


class CostError(ValueError):
    """A graph or export whose cost cannot be counted."""


@dataclass
class ProjectionCost:
    """One projection's synaptic events per sample, and the dendrite that receives them."""

    name: str
    source: str
    target: str
    kind: str
    dendrite: str
    events: float


@dataclass
class NetworkCost:
    """Mean counts per sample over ``samples`` samples.

    ``counted_on`` says whose activity: ``integer`` (the mapped network's events) or ``float``
    (synaptic operations on the float graph). ``routed_events`` and ``chip_crossings`` are None
    without an export directory's placement."""

    counted_on: str
    samples: int
    T: int
    spikes: dict[str, float]
    synaptic_events: dict[str, float]
    projections: list[ProjectionCost] = field(default_factory=list)
    routed_events: float | None = None
    chip_crossings: float | None = None
    #: per population: (routed events, chip crossings) of its spikes
    routed_by_population: dict[str, tuple[float, float]] | None = None

    @property
    def total_spikes(self) -> float:
        return float(sum(self.spikes.values()))

    @property
    def total_synaptic_events(self) -> float:
        return float(sum(self.synaptic_events.values()))

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(total_spikes=self.total_spikes,
                   total_synaptic_events=self.total_synaptic_events)
        return doc


@dataclass(frozen=True)
class EnergyEstimate(EnergyPerInference):
    """Energy per inference counted from a simulator (:class:`EnergyPerInference`), with the
    figures' sources."""

    sources: dict[str, str]


# --------------------------------------------------------------------------- fan-out
def _fan_out(proj: Projection, n_source: int, levels: np.ndarray | None = None) -> np.ndarray:
    """Non-zero synapses leaving each source neuron (``levels``: the integer simulator's
    quantized levels, whose zeros make no CAM entry)."""
    if int(proj.attrs.get("pool", 1) or 1) != 1:
        raise CostError(f"projection {proj.name}: pooled projections are not counted; export "
                        "for a target first (its graph is all sparse)")
    if proj.op == "dense":
        weight = np.asarray(proj.weight).reshape(proj.weight.shape[0], -1)
        return np.count_nonzero(weight, axis=0).astype(np.float64)
    if proj.op == "pointwise":  # the same channel mixing at every pixel of a C-major map
        fan = np.count_nonzero(np.asarray(proj.weight), axis=0).astype(np.float64)
        return np.repeat(fan, n_source // max(fan.size, 1))
    if proj.op == "sparse":
        nonzero = np.asarray(proj.weight if levels is None else levels) != 0
        sources = np.asarray(proj.indices)[:, 1]
        return np.bincount(sources, weights=nonzero.astype(np.float64), minlength=n_source)
    raise CostError(f"projection {proj.name}: op {proj.op!r} is not counted (dense, pointwise or "
                    "sparse); quantize the graph for a target first")


def _dendrites(graph: EIGraph, target: Target) -> dict[str, str]:
    return {p.name: target.dendrite(p.kind) for p in graph.projections}


def _tally(graph: EIGraph, activity: dict[str, np.ndarray], fan_out: dict[str, np.ndarray],
           dendrites: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """Summed spikes per population and events per projection from per-sample activity
    ``(B, n)`` (already summed over time)."""
    spikes = {name: float(a.sum()) for name, a in activity.items()}
    events = {p.name: float((activity[p.source] @ fan_out[p.name]).sum())
              for p in graph.projections}
    return spikes, events


def _finish(graph: EIGraph, counted_on: str, samples: int, spikes: dict[str, float],
            events: dict[str, float], dendrites: dict[str, str]) -> NetworkCost:
    per = 1.0 / max(samples, 1)
    by_dendrite: dict[str, float] = {}
    projections = []
    for p in graph.projections:
        by_dendrite[dendrites[p.name]] = by_dendrite.get(dendrites[p.name], 0.0) + \
            events[p.name] * per
        projections.append(ProjectionCost(p.name, p.source, p.target, p.kind,
                                          dendrites[p.name], events[p.name] * per))
    return NetworkCost(counted_on, samples, graph.T,
                       {name: value * per for name, value in spikes.items()}, by_dendrite,
                       projections)


# --------------------------------------------------------------------------- counts
def integer_cost(graph: EIGraph, x: Any, *, target: str | Path | Target = "dynapse2",
                 export_dir: str | Path | None = None, division: str = "exact",
                 batch_size: int = BATCH) -> NetworkCost:
    """The mapped network's events per sample on ``x`` ``(B, ...)``, from the integer
    simulator's states of the quantized ``graph`` (module doc); with ``export_dir``, the routed
    events and chip crossings of its ``dynapse2.json``."""
    if len(x) == 0:
        raise CostError("integer_cost: no samples")
    target = resolve_target(target)
    sim = IntegerSimulator(graph, division)
    dendrites = _dendrites(graph, target)
    levels = {s.projection: s.levels for syns in sim.synapses.values() for s in syns}
    fan_out = {p.name: _fan_out(p, graph.population(p.source).size, levels.get(p.name))
               for p in graph.projections}
    readout = graph.readout_settings.population
    routes = _routes(graph, Path(export_dir)) if export_dir is not None else None
    spikes: dict[str, float] = {}
    events: dict[str, float] = {}
    routed: dict[str, np.ndarray] = {}
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        result = sim.run(batch, return_states=True)
        inputs = np.asarray(sim.host.spikes(batch), dtype=np.float64)
        activity = {sim.host.input.name: inputs.sum(axis=0).reshape(inputs.shape[1], -1)
                    * (graph.T if inputs.shape[0] == 1 else 1)}
        for pop in graph.populations:
            if pop.name == readout:
                activity[pop.name] = np.asarray(result.states[pop.name]["counts"], np.float64)
            elif pop.role != "input":
                activity[pop.name] = np.asarray(result.states[pop.name]["output"],
                                                np.float64).sum(axis=0)
        s, e = _tally(graph, activity, fan_out, dendrites)
        for name, value in s.items():
            spikes[name] = spikes.get(name, 0.0) + value
        for name, value in e.items():
            events[name] = events.get(name, 0.0) + value
        if routes is not None:
            for name, (destinations, crossing) in routes.items():
                routed[name] = routed.get(name, np.zeros(2)) + [
                    float((activity[name] @ destinations).sum()),
                    float((activity[name] @ crossing).sum())]
    cost = _finish(graph, "integer", len(x), spikes, events, dendrites)
    if routes is not None:
        cost.routed_by_population = {name: (float(r[0]) / len(x), float(r[1]) / len(x))
                                     for name, r in routed.items()}
        cost.routed_events = sum(r[0] for r in cost.routed_by_population.values())
        cost.chip_crossings = sum(r[1] for r in cost.routed_by_population.values())
    return cost


def float_cost(graph: EIGraph, x: Any, *, target: str | Path | Target = "dynapse2",
               batch_size: int = BATCH) -> NetworkCost:
    """Synaptic operations per sample of the float executor on ``x``: one accumulate per
    non-zero source value and non-zero synapse (NeuroBench's count); ``spikes`` the non-zero
    outputs per population (for a LIF population, its spikes)."""
    if len(x) == 0:
        raise CostError("float_cost: no samples")
    target = resolve_target(target)
    fan_out = {p.name: _fan_out(p, graph.population(p.source).size) for p in graph.projections}
    dendrites = _dendrites(graph, target)
    executor = FloatExecutor(graph)
    spikes: dict[str, float] = {}
    events: dict[str, float] = {}
    for start in range(0, len(x), batch_size):
        _, states = executor.run(x[start:start + batch_size], return_states=True)
        activity = {}
        for pop in graph.populations:
            out = np.asarray(states[pop.name]["output"])
            activity[pop.name] = (out != 0).reshape(out.shape[0], out.shape[1], -1).sum(
                axis=0).astype(np.float64)
        s, e = _tally(graph, activity, fan_out, dendrites)
        for name, value in s.items():
            spikes[name] = spikes.get(name, 0.0) + value
        for name, value in e.items():
            events[name] = events.get(name, 0.0) + value
    return _finish(graph, "float", len(x), spikes, events, dendrites)


def _routes(graph: EIGraph, export_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per population, each neuron's SRAM destinations and those on another chip (the input:
    each channel's destinations, none crossing: the host sends to the chip directly)."""
    path = export_dir / "dynapse2.json"
    try:
        config = json.loads(path.read_text())
        routes = {p.name: (np.zeros(p.size), np.zeros(p.size)) for p in graph.populations}
        for chip in config["chips"]:
            for core in chip["cores"]:
                for neuron in core["neurons"]:
                    destinations, crossing = routes[str(neuron["population"])]
                    index = int(neuron["index"])
                    destinations[index] += len(neuron["sram"])
                    crossing[index] += sum(int(d["chip"]) != int(chip["id"])
                                           for d in neuron["sram"])
        inputs = graph.input_settings.population
        for channel in config["input_channels"]:
            routes[inputs][0][int(channel["channel"])] += len(channel["destinations"])
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CostError(f"{path}: cannot read the placement for the routed-event count "
                        f"({type(exc).__name__}: {exc}); re-export the model") from None
    return routes


# --------------------------------------------------------------------------- energy
def energy_estimate(cost: NetworkCost, *, table: EnergyTable | None = None,
                    export_dir: str | Path | None = None) -> EnergyEstimate:
    """Energy per inference of ``cost`` (an integer count) from the ``[energy]`` figures, and
    the board's latency: ``T`` steps and, with ``export_dir``, the chip's synaptic delays.

    Without routed events (no export directory), each synaptic event's routing is left out:
    the estimate is then a lower bound, said in ``note``."""
    table = table or load_energy()
    counts = {"spike": cost.total_spikes, "synaptic_event": cost.total_synaptic_events,
              "routed_event": cost.routed_events or 0.0,
              "chip_crossing": cost.chip_crossings or 0.0}
    priced = table.price(counts)
    delay = 0
    if export_dir is not None:
        try:
            delay = latency_us(json.loads((Path(export_dir) / "dynapse2.json").read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CostError(f"{export_dir}: cannot read dynapse2.json for the latency "
                            f"({type(exc).__name__}: {exc})") from None
    note = table.note
    if cost.routed_events is None:
        note += "; routed events not counted (no export directory): a lower bound"
    return EnergyEstimate(**vars(priced), latency_us=cost.T * DT_US + delay,
                          verified=table.verified, note=note,
                          sources={k: table[k].source for k in EVENT_KINDS})


def variant_costs(quantized: EIGraph, rates: Mapping[str, Mapping[str, np.ndarray]],
                  accuracy: Mapping[str, float], reference: Mapping[str, Any], *,
                  export_dir: str | Path | None = None, table: EnergyTable | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Per variant, its accuracy and the energy of its own activity: ``rates`` are each
    neuron's spikes per model step (interneurons: counts per step), as validation measures them
    for the integer and the analog simulators; times ``T`` they are spikes per sample, times the
    quantized fan-outs synaptic events (and, with ``export_dir``, routed events and crossings).

    A population a variant does not report (the host's input; the integer simulators' readout)
    keeps ``reference``'s count (:func:`cost_report`'s ``integer`` entry), and so do the events
    it sends; ``from_reference`` names those populations."""
    table = table or load_energy()
    sim = IntegerSimulator(quantized, "exact")
    levels = {s.projection: s.levels for syns in sim.synapses.values() for s in syns}
    fan_out = {p.name: _fan_out(p, quantized.population(p.source).size, levels.get(p.name))
               for p in quantized.projections}
    routes = _routes(quantized, Path(export_dir)) if export_dir is not None else None
    ref_events = {p["name"]: float(p["events"]) for p in reference["projections"]}
    out: dict[str, dict[str, Any]] = {}
    for variant, pops in rates.items():
        per_neuron = {p: np.asarray(r, dtype=np.float64).ravel() * quantized.T
                      for p, r in pops.items()}
        spikes = {p: float(per_neuron[p].sum()) if p in per_neuron else float(n)
                  for p, n in reference["spikes"].items()}
        events = sum(float(per_neuron[p.source] @ fan_out[p.name]) if p.source in per_neuron
                     else ref_events[p.name] for p in quantized.projections)
        counts = {"spike": sum(spikes.values()), "synaptic_event": events}
        if routes is not None:
            for name, (destinations, crossing) in routes.items():
                if name in per_neuron:
                    counts["routed_event"] = counts.get("routed_event", 0.0) + \
                        float(per_neuron[name] @ destinations)
                    counts["chip_crossing"] = counts.get("chip_crossing", 0.0) + \
                        float(per_neuron[name] @ crossing)
                else:
                    routed, crossed = reference["routed_by_population"][name]
                    counts["routed_event"] = counts.get("routed_event", 0.0) + float(routed)
                    counts["chip_crossing"] = counts.get("chip_crossing", 0.0) + float(crossed)
        priced = table.price(counts)
        out[variant] = {"accuracy": float(accuracy[variant]), "nj": priced.nj,
                        "low_nj": priced.low_nj, "high_nj": priced.high_nj,
                        "total_spikes": counts["spike"], "total_synaptic_events": events,
                        "from_reference": [p for p in reference["spikes"]
                                           if p not in per_neuron]}
    return out


def cost_report(quantized: EIGraph, x: Any, *, float_graph: EIGraph | None = None,
                export_dir: str | Path | None = None, target: str | Path | Target = "dynapse2"
                ) -> dict[str, Any]:
    """The report's ``cost`` entry: the mapped network's events (integer simulator), its energy
    and latency, and the float graph's synaptic operations when ``float_graph`` is given."""
    mapped = integer_cost(quantized, x, target=target, export_dir=export_dir)
    energy = energy_estimate(mapped, export_dir=export_dir)
    report: dict[str, Any] = {"integer": mapped.to_dict(), "energy": energy.to_dict()}
    if float_graph is not None:
        try:
            report["float"] = float_cost(float_graph, x, target=target).to_dict()
        except CostError as exc:  # conv layers: the synaptic operations are not counted
            report["float"] = {"error": str(exc)}
    return report


def cost_markdown(cost: dict[str, Any]) -> list[str]:
    """The report's "Cost" section from :func:`cost_report`'s entry."""
    mapped, energy = cost["integer"], cost["energy"]
    ops = cost.get("float") or {}
    lines = ["", "## Cost per inference", "",
             f"Mapped network (integer simulator, {mapped['samples']} samples, T = "
             f"{mapped['T']}): {mapped['total_spikes']:.0f} spikes, "
             f"{mapped['total_synaptic_events']:.0f} synaptic events"
             + (f", {mapped['routed_events']:.0f} routed events, "
                f"{mapped['chip_crossings']:.0f} crossing chips"
                if mapped.get("routed_events") is not None else "") + ".", "",
             "| dendrite | synaptic events (integer) | synaptic operations (float graph) |",
             "|---|---|---|"]
    for dendrite, events in mapped["synaptic_events"].items():
        other = (ops.get("synaptic_events") or {}).get(dendrite)
        lines.append(f"| {dendrite.upper()} | {events:.0f} | "
                     f"{'-' if other is None else f'{other:.0f}'} |")
    lines += ["", "| population | spikes |", "|---|---|"]
    lines += [f"| {p} | {n:.1f} |" for p, n in mapped["spikes"].items()]
    lines += ["", f"Energy on DYNAP-SE2: ~{energy['nj']:.0f} nJ per inference (range "
                  f"{energy['low_nj']:.0f}-{energy['high_nj']:.0f} nJ), latency "
                  f"{energy['latency_us'] / 1000:.1f} ms. "
                  + ("" if energy["verified"] else "Per-event figures UNVERIFIED: ")
                  + energy["note"] + "."]
    lines += [f"* {kind}: {source}" for kind, source in energy["sources"].items()]
    if "error" in ops:
        lines += ["", f"Float graph's synaptic operations not counted: {ops['error']}"]
    bench = cost.get("neurobench")
    if bench and "skipped" in bench:
        lines += ["", f"NeuroBench metrics of the float model: skipped ({bench['skipped']})."]
    elif bench:
        synops = bench["SynapticOperations"]
        lines += ["", "NeuroBench metrics of the float model (NeuroBench's harness): footprint "
                      f"{bench['Footprint']:.0f} bytes, connection sparsity "
                      f"{bench['ConnectionSparsity']:.3f}, activation sparsity "
                      f"{bench['ActivationSparsity']:.3f}, synaptic operations "
                      f"{synops['Effective_MACs'] + synops['Effective_ACs']:.0f} per sample "
                      f"(effective MACs {synops['Effective_MACs']:.0f}, ACs "
                      f"{synops['Effective_ACs']:.0f}), accuracy "
                      f"{100 * bench['ClassificationAccuracy']:.2f}%."]
    return lines


def cost_line(export_dir: str | Path) -> str:
    """One line on an export's cost per inference, from its ``validation/report.json``
    (``eideploy validate`` measures it); without one, how to measure it. A report that cannot
    be read is named, never trusted: the export directory is a user's input."""
    path = Path(export_dir) / "validation" / "report.json"
    if not path.is_file():
        return "cost: not measured yet ('eideploy validate MODEL OUT' counts spikes, synaptic " \
               "events and energy per inference)"
    try:
        cost = load_json(path, within=export_dir)["cost"]
        mapped, energy = cost["integer"], cost["energy"]
        dendrites = ", ".join(f"{str(k).upper()} {float(v):.0f}"
                              for k, v in mapped["synaptic_events"].items())
        return (f"cost per inference: {float(mapped['total_spikes']):.0f} spikes, "
                f"{float(mapped['total_synaptic_events']):.0f} synaptic events ({dendrites}), "
                f"~{float(energy['nj']) / 1000:.2f} uJ on DYNAP-SE2 (range "
                f"{float(energy['low_nj']) / 1000:.2f}-{float(energy['high_nj']) / 1000:.2f} uJ, "
                f"{'' if energy['verified'] is True else 'unverified '}per-event figures of "
                f"Moradi et al. 2018), latency {int(energy['latency_us']) / 1000:.1f} ms "
                "(validation/report.json)")
    except (UnsafeFileError, KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"cost: {printable(path)} holds no readable cost ({printable(exc)})"
