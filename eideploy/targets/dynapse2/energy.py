"""Per-event energy figures of DYNAP-SE2: the ``[energy]`` table of ``hardware/dynapse2.toml``.

Each figure is the energy of one event of a kind (a spike generated, a synaptic event at a CAM
match, an event routed to a core, an event crossing chips) with a nominal value, a range where
sources disagree, its source and whether it was checked against that source. The cost estimate
(``eideploy.pipeline.cost``) multiplies them by the events a mapped network makes.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ...resources import hardware_dir

__all__ = ["EnergyFigure", "EnergyTable", "EVENT_KINDS", "load_energy", "EnergyError"]

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
