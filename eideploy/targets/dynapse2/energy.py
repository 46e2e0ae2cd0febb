"""Per-event energy figures of DYNAP-SE2: the ``[energy]`` table of ``hardware/dynapse2.toml``.

Each figure is the energy of one event of a kind (a spike generated, a synaptic event at a CAM
match, an event routed to a core, an event crossing chips) with a nominal value, a range where
sources disagree, its source and whether it was checked against that source. The cost estimate
(``eideploy.pipeline.cost``) multiplies them by the events a mapped network makes;
:func:`board_energy` by the events a run on the board saw (``eideploy run``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ...resources import hardware_dir

__all__ = ["EnergyFigure", "EnergyTable", "EVENT_KINDS", "load_energy", "EnergyError",
           "Priced", "EnergyPerInference", "BoardEnergy", "board_energy",
           "cam_entries_per_delivery"]

#: The events the table prices, in the order reports list them.
EVENT_KINDS = ("spike", "synaptic_event", "routed_event", "chip_crossing")


class EnergyError(ValueError):
    """A missing or malformed ``[energy]`` table."""


@dataclass(frozen=True)
class EnergyFigure:
    """One event kind's energy in picojoules: ``pj`` nominal, ``low_pj``..``high_pj`` the range
    of the sources, ``source`` a citation, ``verified`` whether checked against it."""

    kind: str
    pj: float
    low_pj: float
    high_pj: float
    source: str
    verified: bool


@dataclass(frozen=True)
class EnergyTable:
    """Every event kind's :class:`EnergyFigure`, and the table's ``note`` on its sources."""

    figures: dict[str, EnergyFigure]
    note: str
    path: str

    def __getitem__(self, kind: str) -> EnergyFigure:
        return self.figures[kind]

    @property
    def verified(self) -> bool:
        return all(f.verified for f in self.figures.values())

    def price(self, counts: Mapping[str, float]) -> Priced:
        """The energy of ``counts`` (events per kind; a kind left out counts 0) in nanojoules."""
        unknown = set(counts) - set(EVENT_KINDS)
        if unknown:
            raise EnergyError(f"no energy figure for {sorted(unknown)} (kinds: {EVENT_KINDS})")
        n = {k: float(counts.get(k, 0.0)) for k in EVENT_KINDS}
        per_kind = {k: n[k] * self[k].pj * 1e-3 for k in EVENT_KINDS}
        # summed the same way, so that a figure at the end of its range gives equal numbers
        return Priced(sum(per_kind.values()),
                      sum(n[k] * self[k].low_pj * 1e-3 for k in EVENT_KINDS),
                      sum(n[k] * self[k].high_pj * 1e-3 for k in EVENT_KINDS), per_kind)


@dataclass(frozen=True)
class Priced:
    """Energy in nanojoules: nominal, both ends of the figures' ranges, and per event kind."""

    nj: float
    low_nj: float
    high_nj: float
    per_kind_nj: dict[str, float]


def _figure(table: dict, kind: str, where: str) -> EnergyFigure:
    entry = table.get(kind)
    if not isinstance(entry, dict):
        raise EnergyError(f"{where}: [energy.{kind}] is missing (a table with pj, range_pj, "
                          "source, verified)")

    def number(value: object, key: str) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value < 0):
            raise EnergyError(f"{where}: energy.{kind}.{key}: expected a finite number >= 0, "
                              f"got {value!r}")
        return float(value)

    pj = number(entry.get("pj"), "pj")
    bounds = entry.get("range_pj", [pj, pj])
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise EnergyError(f"{where}: energy.{kind}.range_pj: expected [low, high], got "
                          f"{bounds!r}")
    low, high = number(bounds[0], "range_pj"), number(bounds[1], "range_pj")
    if not low <= pj <= high:
        raise EnergyError(f"{where}: energy.{kind}: pj {pj} is outside range_pj [{low}, {high}]")
    source = entry.get("source")
    verified = entry.get("verified", False)
    if not isinstance(source, str) or not source.strip():
        raise EnergyError(f"{where}: energy.{kind}.source: every figure names its source")
    if not isinstance(verified, bool):
        raise EnergyError(f"{where}: energy.{kind}.verified: expected true or false, got "
                          f"{verified!r}")
    return EnergyFigure(kind, pj, low, high, source, verified)


def load_energy(path: str | Path | None = None) -> EnergyTable:
    """The ``[energy]`` table of a target file (default: the shipped ``dynapse2.toml``)."""
    path = Path(path) if path is not None else hardware_dir() / "dynapse2.toml"
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise EnergyError(f"{path}: cannot be read as TOML ({exc})") from None
    table = doc.get("energy")
    if not isinstance(table, dict):
        raise EnergyError(f"{path}: no [energy] table of per-event energy figures")
    note = table.get("note", "")
    return EnergyTable({k: _figure(table, k, str(path)) for k in EVENT_KINDS},
                       str(note), str(path))


# --------------------------------------------------------------------------- a board's run
@dataclass(frozen=True)
class EnergyPerInference(Priced):
    """Energy per inference (:class:`Priced`), the latency of one inference in microseconds,
    whether every figure is verified, and the note on the figures and the counts."""

    latency_us: int
    verified: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BoardEnergy(EnergyPerInference):
    """Energy and latency per inference of a run on the board, from the events it saw:
    ``events`` per kind and sample (as priced), ``latency_us`` the window a sample is counted
    over, ``counted`` how each count was made, ``synaptic_by_dendrite`` the synaptic events per
    sample on each dendrite where the board counted them (the virtual board), else ``None``."""

    samples: int
    events: dict[str, float]
    counted: str
    synaptic_by_dendrite: dict[str, float] | None = None

    def line(self) -> str:
        """One line for ``eideploy run``'s output."""
        e = self.events
        exact = self.synaptic_by_dendrite is not None
        split = ", ".join(f"{n:.0f} {d.upper()}" for d, n in
                          (self.synaptic_by_dendrite or {}).items() if n)
        return (f"energy per inference: ~{self.nj / 1000:.2f} uJ on DYNAP-SE2 (range "
                f"{self.low_nj / 1000:.2f}-{self.high_nj / 1000:.2f} uJ, "
                f"{'' if self.verified else 'unverified '}per-event figures), latency "
                f"{self.latency_us / 1000:.1f} ms; per sample {e['spike']:.0f} spikes, "
                f"{e['routed_event']:.0f} core deliveries, {'' if exact else '~'}"
                f"{e['synaptic_event']:.0f} synaptic events{f' ({split})' if split else ''}, "
                f"{e['chip_crossing']:.0f} chip "
                f"crossings ({self.counted})")


def cam_entries_per_delivery(config: Mapping[str, Any]) -> float:
    """CAM entries per (chip, core, tag) that any entry listens to: the synaptic events one
    event delivered to a core makes on average (every entry of that core holding its tag
    matches; unweighted by traffic)."""
    keys: dict[tuple[int, int, int], int] = {}
    for chip in config["chips"]:
        for core in chip["cores"]:
            for neuron in core["neurons"]:
                for entry in neuron["cam"]:
                    key = (int(chip["id"]), int(core["id"]), int(entry["tag"]))
                    keys[key] = keys.get(key, 0) + 1
    return sum(keys.values()) / len(keys) if keys else 0.0


def board_energy(config: Mapping[str, Any], *, samples: int, events_sent: int,
                 events_received: int, routing: Mapping[str, Any] | None, latency_us: int,
                 table: EnergyTable | None = None) -> BoardEnergy:
    """Energy per inference of ``samples`` run on the board, from the events seen.

    The virtual board (``routing``: its routing report) counts every neuron's ``spikes``, every
    event delivered to a core (``deliveries``, the host's and the neurons'; a routed event
    each), every CAM match of those deliveries per dendrite (``synaptic_events``: the synaptic
    events, exactly) and every event sent to another chip (``chip_crossings``). A real board
    shows only the host's side: the input events sent (each a routed event) and the output
    events received (spikes; hidden neurons' unseen): a lower bound, with synaptic events
    estimated as the deliveries times :func:`cam_entries_per_delivery` and no chip crossings
    counted. A routing report without ``synaptic_events`` is estimated the same way."""
    if samples < 1:
        raise EnergyError(f"board_energy: {samples} samples")
    table = table or load_energy()
    per = 1.0 / samples
    synapses = cam_entries_per_delivery(config)
    by_dendrite: dict[str, float] | None = None
    crossings = 0.0
    if routing is not None and routing.get("synaptic_events") is not None:
        spikes, delivered = float(routing["spikes"]), float(routing["deliveries"])
        by_dendrite = {d: float(n) * per for d, n in routing["synaptic_events"].items()}
        crossings = float(routing.get("chip_crossings", 0))
        counted = ("virtual board: its spikes, core deliveries, CAM matches and chip crossings, "
                   "all counted")
        note = table.note
    elif routing is not None:
        spikes, delivered = float(routing["spikes"]), float(routing["deliveries"])
        counted = ("virtual board: its spikes and core deliveries; synaptic events = "
                   f"deliveries x {synapses:.1f} CAM entries per (core, tag)")
        note = table.note
    else:
        spikes, delivered = float(events_received), float(events_sent)
        counted = ("board: input events sent and output events received only; synaptic events "
                   f"= input events x {synapses:.1f} CAM entries per (core, tag)")
        note = table.note + "; hidden neurons' spikes and events unseen: a lower bound"
    synaptic = (sum(by_dendrite.values()) if by_dendrite is not None
                else delivered * synapses * per)
    events = {"spike": spikes * per, "synaptic_event": synaptic,
              "routed_event": delivered * per, "chip_crossing": crossings * per}
    priced = table.price(events)
    return BoardEnergy(**vars(priced), latency_us=int(latency_us), verified=table.verified,
                       note=note, samples=samples, events=events, counted=counted,
                       synaptic_by_dendrite=by_dendrite)
