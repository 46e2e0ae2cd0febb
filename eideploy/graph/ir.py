"""The E-I graph: a trained network as populations and projections, in plain numpy.

This is the pipeline's central object (DESIGN §1): lowering makes it from a torch model, the
float executor runs it, quantization rewrites its weights for a target, placement maps its
populations onto cores and the simulators execute it. It is serialised as ``graph.json`` (all
structure and scalars) plus ``weights.npz`` (all arrays), with an exact round trip.

Semantics (the paper's Eqs. 9-15, spec §3), for every time step and every neuron:

* an ``inh`` population sums its ``exc`` projections into ``I_IE`` and responds with
  ``r_I = I_IE`` (``params["response"] == "identity"``) or ``floor(relu(I_IE) / theta_i)``;
* an ``exc`` population sums its ``exc`` projections (AMPA) into ``I_EE``, its ``sub``
  projections (GABA) into ``I_sub`` and its ``div`` projections (SHUNT) into ``I_div``, then
  ``I_int = gain_e * (I_EE - I_sub) / Stab(I_div) + bias`` drives a LIF neuron
  (``tau``, ``v_threshold``, soft reset, membranes starting at 0);
* a ``readout`` population computes ``o = I_EE - I_sub`` (``params["mode"] == "current"``; the
  logits are the mean of ``o`` over time) or, on hardware-sized graphs, integrates it in a
  spiking neuron (``"spiking"``).

The divisive projection carries ``W_EI * g_I`` (g_I folded into its weights, exact); the
subtractive one carries ``W_EI``. Weights are non-negative: the sign is the projection's kind.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..atomic import atomic_write, atomic_write_bytes

__all__ = ["GRAPH_FORMAT", "GRAPH_FORMAT_VERSION", "Population", "Projection", "EIGraph",
           "GraphError", "ROLES", "KINDS", "OPS", "STABILISATIONS", "READOUT_MODES",
           "DivisionSettings", "ReadoutSettings", "InputSettings"]

GRAPH_FORMAT = "eideploy-ei-graph"
GRAPH_FORMAT_VERSION = 1
ROLES = ("input", "exc", "inh", "readout")
KINDS = ("exc", "sub", "div")  # AMPA, GABA, SHUNT on DYNAP-SE2
OPS = ("dense", "conv", "pointwise", "sparse")

Role = Literal["input", "exc", "inh", "readout"]
Kind = Literal["exc", "sub", "div"]
Op = Literal["dense", "conv", "pointwise", "sparse"]
#: Stab() of the divisor (§5.1): the row's smallest positive value for exact zeros, or + eps.
STABILISATIONS = ("adaptive", "fixed-eps")
#: Readouts: the time-averaged current (the torch logits), or spikes of IF readout neurons.
READOUT_MODES = ("current", "spiking")


class GraphError(ValueError):
    """A graph that is inconsistent or a graph file that cannot be read."""


# --------------------------------------------------------------------------- graph settings
# ``graph.division``, ``graph.readout`` and ``graph.input`` stay plain dicts, so graph.json
# round-trips byte for byte; every reader takes them through these records instead, which hold
# each field's one default and refuse a bad value naming the field.
def _number(record: dict[str, Any], key: str, default: float, where: str, *,
            positive: bool = False, non_negative: bool = False) -> float:
    value = record.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and non_negative:
        ok = value >= 0
    if not ok:
        need = " > 0" if positive else " >= 0" if non_negative else ""
        raise GraphError(f"{where}.{key}: expected a finite number{need}, got {value!r}")
    return float(value)


def _choice(record: dict[str, Any], key: str, default: str | None, choices: tuple[str, ...] | None,
            where: str) -> str:
    value = record.get(key, default)
    if value is None:
        raise GraphError(f"{where}.{key}: missing")
    if not isinstance(value, str) or (choices is not None and value not in choices):
        allowed = f"one of {', '.join(choices)}" if choices else "a name"
        raise GraphError(f"{where}.{key}: expected {allowed}, got {value!r}")
    return value


def _integer(record: dict[str, Any], key: str, default: int | None, where: str,
             minimum: int) -> int | None:
    value = record.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GraphError(f"{where}.{key}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class DivisionSettings:
    """``graph.division``: how Eq. 14's divisor is kept away from 0 (§5.1).

    ``stabilisation`` ``adaptive`` (default: exact zeros become the row's smallest positive
    value) or ``fixed-eps`` (``D = I_div + eps``); ``eps`` (default 0) >= 0.
    """

    stabilisation: str = "adaptive"
    eps: float = 0.0

    @classmethod
    def parse(cls, record: dict[str, Any], where: str = "division") -> DivisionSettings:
        return cls(_choice(record, "stabilisation", cls.stabilisation, STABILISATIONS, where),
                   _number(record, "eps", cls.eps, where, non_negative=True))

    @property
    def divisor_floor(self) -> float | None:
        """The constant added to every divisor (``fixed-eps`` with ``eps > 0``), else None: on
        DYNAP-SE2 the leak current that SHUNT adds to."""
        return self.eps if self.stabilisation == "fixed-eps" and self.eps > 0 else None


@dataclass(frozen=True)
class ReadoutSettings:
    """``graph.readout``: the readout ``population`` (required), ``mode`` ``current``
    (default) or ``spiking``, the IF readout's threshold ``theta_out`` (default 1, > 0) and the
    number of ``classes`` (default None: one per neuron of the readout population)."""

    population: str
    mode: str = "current"
    theta_out: float = 1.0
    classes: int | None = None

    @classmethod
    def parse(cls, record: dict[str, Any], where: str = "readout") -> ReadoutSettings:
        return cls(_choice(record, "population", None, None, where),
                   _choice(record, "mode", cls.mode, READOUT_MODES, where),
                   _number(record, "theta_out", cls.theta_out, where, positive=True),
                   _integer(record, "classes", cls.classes, where, 1))


@dataclass(frozen=True)
class InputSettings:
    """``graph.input``: the input ``population`` (required) and how the host turns intensities
    into its spikes (``graph.host``): ``encoding`` (default ``direct``: values as given; which
    encodings a backend runs is its own check), the IF encoder's ``threshold`` (default 1, > 0)
    and initial ``phase`` (default 0.5), the Bernoulli draws' ``seed`` (default 0)."""

    population: str
    encoding: str = "direct"
    threshold: float = 1.0
    phase: float = 0.5
    seed: int = 0

    @classmethod
    def parse(cls, record: dict[str, Any], where: str = "input") -> InputSettings:
        seed = _integer(record, "seed", cls.seed, where, 0)
        return cls(_choice(record, "population", None, None, where),
                   _choice(record, "encoding", cls.encoding, None, where),
                   _number(record, "threshold", cls.threshold, where, positive=True),
                   _number(record, "phase", cls.phase, where),
                   cls.seed if seed is None else seed)


@dataclass
class Population:
    """A group of neurons with shared dynamics: one layer's E or I cells, the input, the readout.

    ``shape`` is ``(n,)`` for dense layers and ``(C, H, W)`` for feature maps (neuron index =
    C-major flattening, as torch's ``Flatten``). ``params`` holds scalars (``tau``,
    ``v_threshold``, ``response``, ``theta_i``, ``mode``...), ``arrays`` per-channel or per-neuron
    vectors (``gain_e`` and ``bias`` of an E population: length C for maps, n for dense).
    """

    name: str
    role: Role
    shape: tuple[int, ...]
    layer: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def channels(self) -> int:
        return int(self.shape[0])

    def per_neuron(self, key: str, default: float) -> np.ndarray:
        """The array ``key`` with one float64 value per neuron (``default`` when absent):
        a scalar is repeated, a per-channel vector repeated over each channel's pixels."""
        value = self.arrays.get(key)
        if value is None:
            return np.full(self.size, float(default))
        value = np.asarray(value, dtype=np.float64).reshape(-1)
        if value.size == self.size:
            return value
        if value.size == 1:
            return np.repeat(value, self.size)
        if value.size == self.channels and self.size % self.channels == 0:
            return np.repeat(value, self.size // self.channels)
        raise GraphError(f"population {self.name}: {key} has {value.size} values; expected 1, "
                         f"{self.channels} (per channel) or {self.size} (per neuron)")


@dataclass
class Projection:
    """Synapses of one kind from one population to another.

    ``op`` says how ``weight`` maps the source's output to the target's input current:

    * ``dense``: ``weight`` (n_target, n_source); a ``(C, H, W)`` source is flattened C-major;
    * ``conv``: ``weight`` (C_out, C_in, k, k) with ``attrs`` ``stride`` and ``padding``;
    * ``pointwise``: ``weight`` (C_target, C_source), the same channel mixing at every pixel
      (W_EI of a conv layer; also dense layers' W_EI with H = W = 1);
    * ``sparse``: ``weight`` the nnz values, ``indices`` (nnz, 2) of (target, source) neurons.

    ``attrs["pool"] = k`` average-pools the source map by k x k (stride k) before the op: the
    network's AvgPool between a LIF and the next layer.
    """

    name: str
    source: str
    target: str
    kind: Kind
    op: Op
    weight: np.ndarray
    indices: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class EIGraph:
    """Populations in forward (topological) order and the projections between them.

    ``input``: ``{"population": name, "encoding": "direct" | "spikes" | ...}``;
    ``readout``: ``{"population": name, "mode": "current" | "spiking", "classes": n}``;
    ``division``: ``{"stabilisation": "adaptive" | "fixed-eps", "eps": float}``;
    ``meta``: provenance (architecture, source model sha256, ...). The three settings dicts are
    read through typed records with their defaults: :attr:`input_settings`,
    :attr:`readout_settings`, :attr:`division_settings`.
    """

    name: str
    T: int
    populations: list[Population]
    projections: list[Projection]
    input: dict[str, Any]
    readout: dict[str, Any]
    division: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- look-ups
    def population(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise KeyError(f"no population named {name!r}")

    def projections_into(self, target: str, kind: str | None = None) -> list[Projection]:
        return [p for p in self.projections
                if p.target == target and (kind is None or p.kind == kind)]

    def projections_from(self, source: str) -> list[Projection]:
        return [p for p in self.projections if p.source == source]

    @property
    def neuron_count(self) -> int:
        return sum(p.size for p in self.populations if p.role != "input")

    # ---- settings, parsed from the dicts on every read (the dicts may be edited in place)
    @property
    def division_settings(self) -> DivisionSettings:
        return DivisionSettings.parse(self.division, f"graph {self.name}: division")

    @property
    def readout_settings(self) -> ReadoutSettings:
        return ReadoutSettings.parse(self.readout, f"graph {self.name}: readout")

    @property
    def input_settings(self) -> InputSettings:
        return InputSettings.parse(self.input, f"graph {self.name}: input")

    # ---- consistency
    def validate(self) -> None:
        """Check names, order, kinds and shapes; raise ``GraphError`` listing every problem."""
        problems: list[str] = []
        names = [p.name for p in self.populations]
        if len(set(names)) != len(names):
            problems.append("population names are not unique")
        order = {n: i for i, n in enumerate(names)}
        for pop in self.populations:
            if pop.role not in ROLES:
                problems.append(f"population {pop.name}: role {pop.role!r} not in {ROLES}")
        for proj in self.projections:
            where = f"projection {proj.name}"
            if proj.source not in order or proj.target not in order:
                problems.append(f"{where}: unknown source or target population")
                continue
            if order[proj.source] >= order[proj.target]:
                problems.append(f"{where}: source {proj.source} does not precede target "
                                f"{proj.target}")
            if proj.kind not in KINDS:
                problems.append(f"{where}: kind {proj.kind!r} not in {KINDS}")
            if proj.op not in OPS:
                problems.append(f"{where}: op {proj.op!r} not in {OPS}")
            if not np.all(np.isfinite(proj.weight)):
                problems.append(f"{where}: weights contain NaN or infinite values")
            elif proj.weight.size and float(proj.weight.min()) < 0:
                problems.append(f"{where}: negative weights (the sign belongs to the kind)")
            if proj.op == "sparse" and (proj.indices is None or proj.indices.shape !=
                                        (proj.weight.shape[0], 2)):
                problems.append(f"{where}: sparse projections need indices of shape (nnz, 2)")
        for key, d in (("input", self.input), ("readout", self.readout)):
            if d.get("population") not in order:
                problems.append(f"{key}: population {d.get('population')!r} is not in the graph")
        for settings, record in ((InputSettings, self.input), (ReadoutSettings, self.readout),
                                 (DivisionSettings, self.division)):
            try:
                settings.parse(record)
            except GraphError as exc:
                problems.append(str(exc))
        if problems:
            raise GraphError(f"graph {self.name}: " + "; ".join(problems))

    # ---- serialisation: graph.json + weights.npz
    def to_dict(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Structure as JSON-able data, and the arrays keyed by where they belong."""
        arrays: dict[str, np.ndarray] = {}
        pops = []
        for pop in self.populations:
            for key, value in pop.arrays.items():
                arrays[f"population/{pop.name}/{key}"] = np.asarray(value)
            pops.append({"name": pop.name, "role": pop.role, "shape": list(pop.shape),
                         "layer": pop.layer, "params": pop.params,
                         "arrays": sorted(pop.arrays)})
        projs = []
        for proj in self.projections:
            arrays[f"projection/{proj.name}/weight"] = np.asarray(proj.weight)
            if proj.indices is not None:
                arrays[f"projection/{proj.name}/indices"] = np.asarray(proj.indices)
            projs.append({"name": proj.name, "source": proj.source, "target": proj.target,
                          "kind": proj.kind, "op": proj.op, "attrs": proj.attrs,
                          "sparse": proj.indices is not None})
        doc = {"format": GRAPH_FORMAT, "format_version": GRAPH_FORMAT_VERSION,
               "name": self.name, "T": self.T, "input": self.input, "readout": self.readout,
               "division": self.division, "meta": self.meta, "populations": pops,
               "projections": projs}
        return doc, arrays

    @classmethod
    def from_dict(cls, doc: dict[str, Any], arrays: dict[str, np.ndarray],
                  source: str = "<graph>") -> EIGraph:
        if doc.get("format") != GRAPH_FORMAT:
            raise GraphError(f"{source}: not an eideploy E-I graph (format {doc.get('format')!r})")
        if int(doc.get("format_version", 0)) > GRAPH_FORMAT_VERSION:
            raise GraphError(f"{source}: graph format_version {doc['format_version']} is newer "
                             "than this eideploy reads; upgrade eideploy")
        try:
            pops = [Population(p["name"], p["role"], tuple(p["shape"]), p.get("layer", ""),
                               dict(p.get("params", {})),
                               {k: arrays[f"population/{p['name']}/{k}"] for k in p["arrays"]})
                    for p in doc["populations"]]
            projs = [Projection(p["name"], p["source"], p["target"], p["kind"], p["op"],
                                arrays[f"projection/{p['name']}/weight"],
                                arrays[f"projection/{p['name']}/indices"] if p.get("sparse")
                                else None, dict(p.get("attrs", {})))
                     for p in doc["projections"]]
            graph = cls(doc["name"], int(doc["T"]), pops, projs, dict(doc["input"]),
                        dict(doc["readout"]), dict(doc["division"]), dict(doc.get("meta", {})))
        except KeyError as exc:
            raise GraphError(f"{source}: missing field or array {exc}") from None
        graph.validate()
        return graph

    def save(self, directory: str | Path) -> None:
        """Write ``graph.json`` and ``weights.npz`` into ``directory`` (each file atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        doc, arrays = self.to_dict()
        atomic_write_bytes(directory / "graph.json",
                      (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
        atomic_write(directory / "weights.npz", lambda fh: _save_npz_deterministic(fh, arrays))

    @classmethod
    def load(cls, directory: str | Path) -> EIGraph:
        directory = Path(directory)
        gpath, wpath = directory / "graph.json", directory / "weights.npz"
        for path in (gpath, wpath):
            if not path.is_file():
                raise GraphError(f"{path}: missing; an E-I graph directory holds graph.json and "
                                 "weights.npz (written by 'eideploy export')")
        try:
            doc = json.loads(gpath.read_text())
        except json.JSONDecodeError as exc:
            raise GraphError(f"{gpath}: not valid JSON ({exc})") from None
        try:
            with np.load(wpath, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (ValueError, OSError) as exc:
            raise GraphError(f"{wpath}: cannot be read as an npz archive ({exc})") from None
        return cls.from_dict(doc, arrays, str(gpath))


def _save_npz_deterministic(path: str, arrays: dict[str, np.ndarray]) -> None:
    """An npz whose bytes depend only on the arrays (fixed zip timestamps, sorted names)."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
