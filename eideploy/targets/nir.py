"""NIR out and in: an E-I graph as a Neuromorphic Intermediate Representation file, and a
feed-forward NIR graph (as snntorch, norse, sinabs or rockpool write it) as an E-I graph.

docs/nir.md is the user's page; the mapping in short:

Out (:func:`write_nir`): every projection is a NIR ``Linear`` (dense, sparse, point-wise on a
vector) or ``Conv2d`` (conv, point-wise on a map as a 1x1 kernel), with ``AvgPool2d`` /
``Flatten`` in front where the graph pools or flattens; its weights are *signed*: ``exc`` +W,
``sub`` -W, so the subtractive path is ordinary signed edges. An E population is a ``LIF`` with
``tau = tau_steps * dt``, ``r = tau_steps * g_E``, ``v_leak = tau_steps * b_E``, so that NIR's
forward-Euler step ``v += dt/tau (v_leak - v + r I)`` is eideploy's ``h = (1 - 1/tau) u + g_E I +
b_E``; its reset convention (subtract the threshold in the step that spikes, spike at ``v >=
threshold``) is stated in the node's metadata (``reset``, ``spike_test``), since NIR's LIF resets
to ``v_reset``. Two things NIR cannot express are custom node types that a NIR reader that does
not know them refuses (``nir.read`` fails on an unknown type), never drops:

* ``EIDivisiveIntegration`` (Eq. 14's shunt): ``out = N / Stab(D)``, ``N`` the sum of the
  inputs not named in ``divisor_inputs``, ``D`` the sum of those that are; ``Stab`` is
  ``stabilisation`` (``fixed-eps``: ``D + eps``; ``adaptive``: exact zeros become the row's
  smallest positive value);
* ``EIInhibitoryCount`` (an interneuron's graded response): ``out = floor(relu(I) / theta_i)``
  spikes per step, no state.

The graph's own record (names, roles, kinds, T, encodings) rides in metadata as JSON, so
eideploy -> NIR -> eideploy gives the same graph.

In (:func:`read_nir`): a foreign file is accepted as a chain ``Input -> (Flatten) -> (Affine |
Linear | Conv2d) -> (LIF | IF) -> (AvgPool2d | SumPool2d) -> ... -> Output``, a pool becoming the
next projection's ``pool``. Each projection + neuron pair becomes an E population
whose signed weights split into an ``exc`` (positive part) and a ``sub`` (magnitude of the
negative part) projection; ``r``, ``v_leak``, bias and ``dt`` fold into ``g_E`` and ``b_E``;
``tau`` becomes ``tau_steps = tau / dt`` (``euler``) or ``1 / (1 - exp(-dt / tau))`` (``exp``).
The last neuron layer's spikes are counted by a spiking readout (identity weights, threshold 1).
The reset convention, which a NIR file does not carry, is the caller's ``reset`` (or the node's
metadata, or else NIR's own reset to ``v_reset``); where it or anything else differs from
eideploy's neuron the import refuses, naming the difference, unless ``approximate`` accepts it,
and every accepted difference is returned as a note.

The HDF5 file is read as untrusted input: its size, every dataset's element count, the node
count and the nesting depth are bounded before anything is allocated.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..graph.ir import (
    GRAPH_FORMAT,
    GRAPH_FORMAT_VERSION,
    EIGraph,
    GraphError,
    Population,
    Projection,
)
from ..safefile import UnsafeFileError, check_regular, printable

__all__ = ["NIRError", "NIRImport", "ImportOptions", "EXTENSION_TYPES", "RESETS",
           "DISCRETISATIONS", "DEFAULT_DT", "NONLEAKY_TAU", "MAX_NIR_BYTES", "graph_to_nir",
           "write_nir", "read_nir_dict", "nir_to_graph", "read_nir", "require_nir"]

#: The custom node types eideploy writes for what NIR cannot express (module doc).
EXTENSION_TYPES = ("EIDivisiveIntegration", "EIInhibitoryCount")
#: Reset conventions of a spiking neuron. ``subtract``: ``v -= threshold`` in the step that
#: spikes, before the next leak (eideploy: ``v[t] = beta (v[t-1] - theta s[t-1]) + I[t]``;
#: snntorch's ``Leaky(reset_delay=False)`` is this while a reset leaves v below threshold);
#: ``subtract-delayed``: the threshold subtracted one step later, after the leak
#: (``v[t] = beta v[t-1] + I[t] - theta s[t-1]``, snntorch's default ``Leaky``; the same as
#: ``subtract`` when beta = 1); ``to-v_reset``: ``v = v_reset`` (NIR's own definition).
RESETS = ("subtract", "subtract-delayed", "to-v_reset")
#: How a NIR time constant becomes a per-step decay: ``euler`` ``1 - dt/tau`` (snntorch, norse),
#: ``exp`` ``exp(-dt/tau)`` (rockpool, sinabs).
DISCRETISATIONS = ("euler", "exp")
#: The time step of an eideploy graph written to NIR unless told otherwise (1 ms, in seconds).
DEFAULT_DT = 1e-3
#: The largest NIR file read, the most elements of one dataset, the most nodes.
MAX_NIR_BYTES = 512 << 20
MAX_DATASET_ELEMENTS = 1 << 26
MAX_TOTAL_ELEMENTS = 1 << 27
MAX_NODES = 10_000
MAX_DEPTH = 8
#: Relative distance below which a writer's float32 rounding is taken back to a round value
#: (``tau / dt = 3.9999998`` -> 4; ``r dt / tau = 0.9999997`` -> 1), each time with a note.
ROUND_TOLERANCE = 1e-5
#: ``tau`` (in steps) of a non-leaky neuron in an E-I graph: graph.json is strict JSON (no
#: infinity), and ``1 - 1/1e300`` is 1.0 exactly in float32 and float64, so the decay is exactly
#: none; eideploy writes such a population as a NIR ``IF``.
NONLEAKY_TAU = 1e300
_SPIKE_TEST = ">="  # eideploy's LIF spikes at h >= threshold (graph/execute.py lif_multistep)


class NIRError(ValueError):
    """A NIR file that cannot be read or has no E-I graph form, or a graph with no NIR form."""


def require_nir() -> Any:
    """The ``nir`` module, or an ImportError naming the extra that installs it."""
    try:
        import h5py  # noqa: F401  (nir's file format)
        import nir
    except ImportError:
        raise ImportError("NIR files need the 'nir' package: pip install 'eideploy[nir]'"
                          ) from None
    return nir


# =========================================================================== out
def _per_neuron(pop: Population, key: str, default: float) -> np.ndarray:
    return pop.per_neuron(key, default).reshape(pop.shape)


def _meta(record: dict[str, Any], **arrays: np.ndarray) -> dict[str, Any]:
    return {"eideploy": json.dumps(record, sort_keys=True), **arrays}


@dataclass
class _Writer:
    """Accumulates NIR nodes (as NIR's own ``to_dict`` form) and edges."""

    nir: Any
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, node: Any, metadata: dict[str, Any] | None = None) -> str:
        if name in self.nodes:
            raise NIRError(f"NIR node name {name!r} used twice")
        doc = node if isinstance(node, dict) else node.to_dict()
        if metadata:
            doc["metadata"] = metadata
        self.nodes[name] = _scalars(doc)
        return name


def _scalars(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with 0-d arrays as Python numbers: HDF5 cannot compress a scalar dataset, and
    ``nir.write`` compresses every array."""
    return {k: _scalars(v) if isinstance(v, dict) else
            v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v
            for k, v in doc.items()}


def _projection_nodes(w: _Writer, proj: Projection, source: Population, target: Population,
                      into: str) -> None:
    """``proj`` as [AvgPool2d] -> [Flatten] -> Linear | Conv2d -> ``into``, weights signed."""
    nir = w.nir
    sign = -1.0 if proj.kind == "sub" else 1.0  # keeps the weights' dtype; -(-w) is exact
    weight = np.asarray(proj.weight)
    previous = source.name
    shape = tuple(source.shape)
    pool = int(proj.attrs.get("pool", 1))
    if pool > 1:
        name = w.add(f"{proj.name}.pool", nir.AvgPool2d(kernel_size=np.array([pool, pool]),
                                                          stride=np.array([pool, pool]),
                                                          padding=np.array([0, 0])))
        w.edges.append((previous, name))
        previous, shape = name, (shape[0], shape[1] // pool, shape[2] // pool)
    record: dict[str, Any] = {"projection": proj.name, "source": proj.source,
                              "target": proj.target, "kind": proj.kind, "op": proj.op,
                              "attrs": proj.attrs}
    arrays: dict[str, np.ndarray] = {}
    is_map = len(shape) == 3
    if proj.op == "conv" or (proj.op == "pointwise" and is_map):
        kernel = weight if proj.op == "conv" else weight[:, :, None, None]
        node = nir.Conv2d(input_shape=np.array(shape[1:]), weight=sign * kernel,
                          stride=np.array([int(proj.attrs.get("stride", 1))] * 2),
                          padding=np.array([int(proj.attrs.get("padding", 0))] * 2),
                          dilation=np.array([1, 1]), groups=1,
                          bias=np.zeros(kernel.shape[0]))
    else:
        n_src, n_tgt = int(np.prod(shape)), target.size
        if proj.op == "sparse":
            if n_src * n_tgt > MAX_DATASET_ELEMENTS:
                raise NIRError(f"projection {proj.name}: a {n_tgt} x {n_src} sparse projection "
                               "is too large to write as a dense NIR Linear")
            dense = np.zeros((n_tgt, n_src), dtype=weight.dtype)
            assert proj.indices is not None
            np.add.at(dense, (proj.indices[:, 0], proj.indices[:, 1]), weight)
            arrays = {"indices": np.asarray(proj.indices), "values": weight}
            weight = dense
        if is_map:
            name = w.add(f"{proj.name}.flatten", nir.Flatten(
                input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
            w.edges.append((previous, name))
            previous = name
        node = nir.Linear(weight=sign * weight)
    w.add(proj.name, node, _meta(record, **arrays))
    w.edges += [(previous, proj.name), (proj.name, into)]


def _population_record(pop: Population) -> dict[str, Any]:
    return {"population": pop.name, "role": pop.role, "shape": list(pop.shape),
            "layer": pop.layer, "params": pop.params, "arrays": sorted(pop.arrays)}


def _population_meta(pop: Population, **extra: Any) -> dict[str, Any]:
    arrays = {f"array.{k}": np.asarray(v) for k, v in pop.arrays.items()}
    return {**_meta(_population_record(pop)), **arrays, **extra}


def _population_node(w: _Writer, graph: EIGraph, pop: Population, dt: float) -> str:
    """The node(s) of one population; returns the node its projections feed."""
    nir = w.nir
    shape = np.array(pop.shape)
    ones = np.ones(pop.shape)
    convention = {"reset": "subtract", "spike_test": _SPIKE_TEST, "dt": dt,
                  "discretisation": "euler"}
    if pop.role == "input":
        w.add(pop.name, nir.Input(input_type={"input": shape}), _population_meta(pop))
        return pop.name
    if pop.role == "inh":
        response = pop.params.get("response", "identity")
        if response == "identity":
            w.add(pop.name, nir.Scale(scale=ones), _population_meta(pop))
        else:
            w.add(pop.name, {"type": "EIInhibitoryCount", "shape": shape,
                             "theta_i": np.full(pop.shape, float(pop.params.get("theta_i", 1.0))),
                             "equation": "out = floor(relu(I) / theta_i) per step, no state"},
                  _population_meta(pop))
        return pop.name
    if pop.role == "readout":
        settings = graph.readout_settings
        if settings.mode == "current":
            w.add(pop.name, nir.Scale(scale=ones),
                  _population_meta(pop, readout="current: the class of the largest time-mean "
                                   "of the summed input current"))
        else:
            # IF: dv/dt = r I, one Euler step v += dt r I = I, graded: floor(v / theta) spikes
            w.add(pop.name, nir.IF(r=ones / dt, v_threshold=ones * settings.theta_out,
                                   v_reset=np.zeros(pop.shape)),
                  _population_meta(pop, **convention,
                                   spikes_per_step="floor(v / v_threshold)",
                                   readout="spiking: the class with the most spikes"))
        return pop.name
    # exc: [shunt] -> LIF
    tau = float(pop.params["tau"])
    gain, bias = _per_neuron(pop, "gain_e", 1.0), _per_neuron(pop, "bias", 0.0)
    theta = ones * float(pop.params["v_threshold"])
    if tau >= NONLEAKY_TAU:
        if np.any(bias != 0):
            raise NIRError(f"population {pop.name}: a non-leaky neuron with a bias has no NIR "
                           "form (IF has no v_leak)")
        node = nir.IF(r=gain / dt, v_threshold=theta, v_reset=np.zeros(pop.shape))
    else:
        node = nir.LIF(tau=ones * tau * dt, r=gain * tau, v_leak=bias * tau, v_threshold=theta,
                       v_reset=np.zeros(pop.shape))
    w.add(pop.name, node, _population_meta(pop, **convention))
    divisors = [p.name for p in graph.projections_into(pop.name, "div")]
    if not divisors:
        return pop.name
    division = graph.division_settings
    shunt = w.add(f"{pop.name}.shunt", {
        "type": "EIDivisiveIntegration", "shape": shape,
        "divisor_inputs": "\n".join(divisors),
        "stabilisation": division.stabilisation, "eps": float(division.eps),
        "equation": "out = N / Stab(D); N: sum of the inputs not in divisor_inputs, D: sum of "
                    "those in it; Stab fixed-eps: D + eps; adaptive: zeros -> the row's "
                    "smallest positive value"})
    w.edges.append((shunt, pop.name))
    return shunt


def graph_to_nir(graph: EIGraph, dt: float = DEFAULT_DT) -> dict[str, Any]:
    """``graph`` as a NIR graph in NIR's dictionary form (what ``nir.write`` serialises)."""
    nir = require_nir()
    if not (dt > 0 and math.isfinite(dt)):
        raise NIRError(f"dt must be a positive number of seconds, got {dt!r}")
    graph.validate()
    w = _Writer(nir)
    pops = {p.name: p for p in graph.populations}
    into: dict[str, str] = {}
    for pop in graph.populations:
        into[pop.name] = _population_node(w, graph, pop, dt)
    for proj in graph.projections:
        _projection_nodes(w, proj, pops[proj.source], pops[proj.target], into[proj.target])
    readout = graph.readout_settings.population
    w.add("output", nir.Output(output_type={"output": np.array(pops[readout].shape)}))
    w.edges.append((readout, "output"))
    record = {"format": GRAPH_FORMAT, "format_version": GRAPH_FORMAT_VERSION,
              "name": graph.name, "T": graph.T, "input": graph.input,
              "readout": graph.readout, "division": graph.division, "meta": graph.meta,
              "populations": [p.name for p in graph.populations],
              "projections": [p.name for p in graph.projections], "dt": dt}
    return {"type": "NIRGraph", "nodes": w.nodes, "edges": w.edges,
            "metadata": {"eideploy": json.dumps(record, sort_keys=True, default=str),
                         "writer": "eideploy", "extensions": ",".join(EXTENSION_TYPES)}}


class _Serialised:
    """What ``nir.write`` needs of a graph: its dictionary form."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def to_dict(self) -> dict[str, Any]:
        return self.doc


def write_nir(graph: EIGraph, path: str | Path, dt: float = DEFAULT_DT) -> Path:
    """Write ``graph`` as a NIR (HDF5) file at ``path`` (atomically); returns the path."""
    import io

    from ..atomic import atomic_write_bytes

    nir = require_nir()
    doc = graph_to_nir(graph, dt)
    doc["edges"] = np.array(doc["edges"], dtype=object).astype("S")
    buffer = io.BytesIO()  # h5py writes to a seekable, readable file: built here, then renamed
    nir.write(buffer, _Serialised(doc))
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


# =========================================================================== in: the file
def read_nir_dict(path: str | Path) -> dict[str, Any]:
    """The NIR file at ``path`` as NIR's dictionary form, read bounded: a regular file of at
    most :data:`MAX_NIR_BYTES`, datasets of at most :data:`MAX_DATASET_ELEMENTS` numeric or
    string elements, at most :data:`MAX_NODES` nodes, groups nested at most :data:`MAX_DEPTH`."""
    require_nir()
    import h5py

    source = printable(path)
    try:
        check_regular(path, MAX_NIR_BYTES, limit_text=f"{MAX_NIR_BYTES >> 20} MB limit of a "
                      "NIR file")
    except FileNotFoundError:
        raise NIRError(f"{source}: no such file") from None
    except UnsafeFileError as exc:
        raise NIRError(str(exc)) from None
    count = [0, 0]  # entries, dataset elements

    def dataset(item: Any, where: str) -> Any:
        if item.size > MAX_DATASET_ELEMENTS:
            raise NIRError(f"{source}: {where} holds {item.size} elements (limit "
                           f"{MAX_DATASET_ELEMENTS})")
        count[1] += item.size
        if count[1] > MAX_TOTAL_ELEMENTS:  # compressed datasets could otherwise add up
            raise NIRError(f"{source}: its datasets hold more than {MAX_TOTAL_ELEMENTS} "
                           "elements in all")
        if item.is_virtual or item.external:
            raise NIRError(f"{source}: {where} keeps its data in another file (a virtual or "
                           "external dataset); a NIR file holds its own data")
        kind = item.dtype.kind
        if kind not in "biufSOT" or (kind == "O" and h5py.check_string_dtype(item.dtype) is None):
            raise NIRError(f"{source}: {where} is not numeric or text (dtype {item.dtype})")
        value = item[()]
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return value

    def group(node: Any, where: str, depth: int) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise NIRError(f"{source}: {where} nests deeper than {MAX_DEPTH} levels")
        out: dict[str, Any] = {}
        for key in node:
            count[0] += 1
            if count[0] > MAX_NODES * 64:
                raise NIRError(f"{source}: more than {MAX_NODES * 64} entries")
            here = f"{where}/{printable(key, 80)}"
            # a soft or external link could lead anywhere (another file on this machine):
            # only the file's own objects are read
            if not isinstance(node.get(key, getlink=True), h5py.HardLink):
                raise NIRError(f"{source}: {here} is a link, not an object of the file")
            item = node[key]
            if isinstance(item, h5py.Group):
                out[key] = group(item, here, depth + 1)
            elif isinstance(item, h5py.Dataset):
                out[key] = dataset(item, here)
            else:
                raise NIRError(f"{source}: {here} is neither a group nor a dataset")
        return out

    try:
        with h5py.File(path, "r") as fh:
            if "node" not in fh or not isinstance(fh["node"], h5py.Group):
                raise NIRError(f"{source}: not a NIR file (no 'node' group; NIR files are "
                               "written by nir.write)")
            doc = group(fh["node"], "node", 0)
    except NIRError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise NIRError(f"{source}: cannot be read as a NIR (HDF5) file "
                       f"({printable(exc, 160)})") from None
    if doc.get("type") != "NIRGraph" or not isinstance(doc.get("nodes"), dict):
        raise NIRError(f"{source}: the top node is not a NIRGraph")
    if len(doc["nodes"]) > MAX_NODES:
        raise NIRError(f"{source}: {len(doc['nodes'])} nodes (limit {MAX_NODES})")
    return doc


def _edges(doc: dict[str, Any], source: str) -> list[tuple[str, str]]:
    raw = doc.get("edges")
    array = np.asarray(raw if raw is not None else np.zeros((0, 2), dtype="S1"))
    if array.size == 0:
        return []
    if array.ndim != 2 or array.shape[1] != 2:
        raise NIRError(f"{source}: edges must be pairs of node names, got shape {array.shape}")
    def text(v: Any) -> str:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    edges = [(text(a), text(b)) for a, b in array]
    for a, b in edges:
        for end in (a, b):
            if end not in doc["nodes"]:
                raise NIRError(f"{source}: an edge names node {printable(end, 80)!r}, which "
                               "is not in the graph")
    return edges


# =========================================================================== in: graphs
@dataclass
class NIRImport:
    """An imported graph and what the import had to say about it: ``notes`` (every difference
    accepted, every rounding), ``exact`` (False where a difference in semantics was accepted
    with ``approximate``), ``writer`` (``eideploy`` or ``foreign``)."""

    graph: EIGraph
    notes: list[str]
    exact: bool
    writer: str


def _array(node: dict[str, Any], key: str, where: str, *, required: bool = True
           ) -> np.ndarray | None:
    value = node.get(key)
    if value is None:
        if required:
            raise NIRError(f"{where}: field {key!r} missing")
        return None
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise NIRError(f"{where}: field {key!r} is not numeric") from None
    if not np.all(np.isfinite(array)) and key not in ("tau", "r"):
        raise NIRError(f"{where}: field {key!r} holds NaN or infinite values")
    return array


def _record(node: dict[str, Any], where: str) -> dict[str, Any]:
    meta = node.get("metadata") or {}
    text = meta.get("eideploy") if isinstance(meta, dict) else None
    if not isinstance(text, str):
        raise NIRError(f"{where}: the eideploy record is missing from its metadata")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NIRError(f"{where}: the eideploy record is not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise NIRError(f"{where}: the eideploy record is not an object")
    return record


def _from_eideploy(doc: dict[str, Any], source: str) -> EIGraph:
    """The graph a file written by :func:`write_nir` holds: structure from the records, weights
    from the NIR nodes (signs taken off), per-population arrays from the metadata."""
    top = _record(doc, f"{source}: graph")
    nodes: dict[str, dict[str, Any]] = doc["nodes"]
    pops: list[Population] = []
    projs: list[Projection] = []
    try:
        for name in top["populations"]:
            node = nodes[name]
            where = f"{source}: node {printable(name, 80)}"
            rec = _record(node, where)
            meta = node["metadata"]
            arrays = {k: np.asarray(meta[f"array.{k}"]) for k in rec["arrays"]}
            for key, value in arrays.items():
                if value.dtype.kind not in "biuf" or not np.all(np.isfinite(value)):
                    raise NIRError(f"{where}: array {printable(key, 40)} is not finite numbers")
            pops.append(Population(rec["population"], rec["role"], tuple(rec["shape"]),
                                   rec.get("layer", ""), dict(rec.get("params", {})), arrays))
        for name in top["projections"]:
            node = nodes[name]
            where = f"{source}: node {printable(name, 80)}"
            rec = _record(node, where)
            _array(node, "weight", where)  # checked numeric and finite
            weight = np.asarray(node["weight"])
            weight = np.abs(weight) if rec["kind"] == "sub" else weight
            indices = None
            if rec["op"] == "sparse":
                meta = node["metadata"]
                indices = np.asarray(meta["indices"], dtype=np.int64)
                weight = np.asarray(meta["values"])
            elif rec["op"] == "pointwise" and weight.ndim == 4:
                weight = weight[:, :, 0, 0]
            projs.append(Projection(rec["projection"], rec["source"], rec["target"],
                                    rec["kind"], rec["op"], weight, indices,
                                    dict(rec.get("attrs", {}))))
        graph = EIGraph(top["name"], int(top["T"]), pops, projs, dict(top["input"]),
                        dict(top["readout"]), dict(top["division"]), dict(top.get("meta", {})))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, NIRError):
            raise
        raise NIRError(f"{source}: an eideploy NIR file with a missing or malformed part "
                       f"({printable(exc, 120)})") from None
    try:
        graph.validate()
    except GraphError as exc:
        raise NIRError(f"{source}: {exc}") from None
    return graph


@dataclass(frozen=True)
class ImportOptions:
    """How a foreign NIR graph's continuous-time neurons become eideploy's steps: ``T`` time
    steps, ``dt`` seconds per step, ``reset`` (one of :data:`RESETS`, None: the node's metadata
    or NIR's ``to-v_reset``), ``discretisation`` (:data:`DISCRETISATIONS`), ``encoding`` of the
    input (``spikes``: the inputs are spike trains ``(B, T, ...)``; ``direct``: values fed at
    every step), ``approximate`` (accept a difference in neuron semantics, with a note)."""

    T: int
    dt: float
    reset: str | None = None
    discretisation: str = "euler"
    encoding: str = "spikes"
    approximate: bool = False


def _chain(doc: dict[str, Any], edges: list[tuple[str, str]], source: str) -> list[str]:
    """The node names from the Input to the Output of a feed-forward chain, or NIRError."""
    nodes = doc["nodes"]
    inputs = [n for n, d in nodes.items() if isinstance(d, dict) and d.get("type") == "Input"]
    outputs = [n for n, d in nodes.items() if isinstance(d, dict) and d.get("type") == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRError(f"{source}: eideploy imports a graph with one Input and one Output node; "
                       f"this one has {len(inputs)} and {len(outputs)}")
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    for name in nodes:
        if len(succ.get(name, [])) > 1 or len(pred.get(name, [])) > 1:
            raise NIRError(f"{source}: node {printable(name, 80)!r} has "
                           f"{len(pred.get(name, []))} inputs and {len(succ.get(name, []))} "
                           "outputs; eideploy imports feed-forward chains (each node one input "
                           "and one output: no branches, skips or recurrence)")
    order, here = [inputs[0]], inputs[0]
    while here != outputs[0]:
        nxt = succ.get(here, [])
        if not nxt:
            raise NIRError(f"{source}: the chain from {inputs[0]!r} ends at "
                           f"{printable(here, 80)!r} before reaching the Output")
        here = nxt[0]
        if here in order:
            raise NIRError(f"{source}: the graph has a cycle through {printable(here, 80)!r}")
        order.append(here)
    unused = sorted(set(nodes) - set(order))
    if unused:
        raise NIRError(f"{source}: nodes off the Input -> Output chain: "
                       f"{printable(', '.join(unused), 160)}")
    return order


def _uniform(values: np.ndarray, what: str, where: str) -> float:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size == 0:
        raise NIRError(f"{where}: {what} is empty")
    if not np.all(flat == flat[0]):
        raise NIRError(f"{where}: {what} differs between neurons ({flat.min():g} .. "
                       f"{flat.max():g}); an eideploy population has one {what}")
    return float(flat[0])


def _rounded(value: float, what: str, where: str, notes: list[str]) -> float:
    """``value`` taken to the nearest integer when within :data:`ROUND_TOLERANCE` (a writer's
    float32 rounding), with a note; else as it is."""
    nearest = round(value)
    if nearest != value and nearest > 0 and abs(value - nearest) <= ROUND_TOLERANCE * nearest:
        notes.append(f"{where}: {what} {value!r} taken as {nearest} (float32 rounding of the "
                     "writer)")
        return float(nearest)
    return value


@dataclass
class _Layer:
    """A projection node waiting for the neuron node that follows it: its signed ``weight``,
    per-neuron ``bias``, eideploy ``op`` and ``attrs``, and the ``shape`` it outputs."""

    name: str
    weight: np.ndarray
    bias: np.ndarray
    op: str = "dense"
    attrs: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] = ()


def _pair(node: dict[str, Any], key: str, default: int, where: str) -> int:
    """A conv or pooling parameter that eideploy keeps as one integer: the same along H and W."""
    value = node.get(key, default)
    flat = np.asarray(value if value is not None else default).reshape(-1)
    if flat.size not in (1, 2) or flat.dtype.kind not in "iuf" or not np.all(flat == flat[0]) \
            or flat[0] != int(flat[0]) or flat[0] < 0:
        raise NIRError(f"{where}: {key} {printable(value)} must be one non-negative integer for "
                       "both axes (eideploy's convolutions and pools are square)")
    return int(flat[0])


def _projection(node: dict[str, Any], kind: str, where: str, shape: tuple[int, ...],
                pool: int, name: str) -> _Layer:
    """An Affine / Linear / Conv2d node reading ``shape`` (after a ``pool`` x ``pool`` average)."""
    weight = _array(node, "weight", where)
    assert weight is not None
    attrs: dict[str, Any] = {"pool": pool} if pool > 1 else {}
    read = shape if pool == 1 else (shape[0], shape[1] // pool, shape[2] // pool)
    if kind == "Conv2d":
        if len(read) != 3 or weight.ndim != 4 or weight.shape[1] != read[0]:
            raise NIRError(f"{where}: kernel {weight.shape} does not read a {read} map "
                           "(C, H, W); a convolution needs a map with its input channels")
        if weight.shape[2] != weight.shape[3]:
            raise NIRError(f"{where}: kernel {weight.shape[2:]} is not square")
        if _pair(node, "dilation", 1, where) != 1 or _pair(node, "groups", 1, where) != 1:
            raise NIRError(f"{where}: dilated or grouped convolutions have no E-I graph form")
        stride, padding = _pair(node, "stride", 1, where), _pair(node, "padding", 0, where)
        if stride < 1:
            raise NIRError(f"{where}: stride must be >= 1")
        k = weight.shape[2]
        out = (weight.shape[0], (read[1] + 2 * padding - k) // stride + 1,
               (read[2] + 2 * padding - k) // stride + 1)
        if min(out) < 1:
            raise NIRError(f"{where}: maps {read} to nothing ({out})")
        bias = _array(node, "bias", where, required=False)
        bias = np.zeros(out[0]) if bias is None else bias.reshape(-1)
        if bias.size != out[0]:
            raise NIRError(f"{where}: bias has {bias.size} values for {out[0]} channels")
        per_neuron = np.repeat(bias, out[1] * out[2])  # C-major, as the population's neurons
        return _Layer(name, weight, per_neuron, "conv",
                      {**attrs, "stride": stride, "padding": padding}, out)
    size = int(np.prod(read))
    if weight.ndim != 2 or weight.shape[1] != size:
        raise NIRError(f"{where}: weight {weight.shape} does not read the {size} values of a "
                       f"{read} source" + (f" pooled {pool} x {pool}" if pool > 1 else ""))
    bias = _array(node, "bias", where) if kind == "Affine" else None
    bias = np.zeros(weight.shape[0]) if bias is None else bias.reshape(-1)
    if bias.size != weight.shape[0]:
        raise NIRError(f"{where}: bias has {bias.size} values for {weight.shape[0]} rows")
    return _Layer(name, weight, bias, "dense", attrs, (weight.shape[0],))


def _neuron(node: dict[str, Any], where: str, opts: ImportOptions, n: int, notes: list[str],
            differences: list[str]) -> tuple[float, float, np.ndarray, np.ndarray]:
    """``(tau_steps, threshold, input_gain, drive)`` of a LIF or IF node: eideploy's
    ``h = (1 - 1/tau_steps) u + input_gain * I + drive``, differences in semantics collected."""
    kind = node["type"]
    r = _array(node, "r", where)
    theta = _uniform(_array(node, "v_threshold", where), "v_threshold", where)
    if theta <= 0:
        raise NIRError(f"{where}: v_threshold {theta} must be > 0")
    meta = node.get("metadata") if isinstance(node.get("metadata"), dict) else {}
    reset = opts.reset or (meta.get("reset") if meta.get("reset") in RESETS else None) \
        or "to-v_reset"
    if kind == "IF":
        tau_steps, gain, drive = NONLEAKY_TAU, r * opts.dt, np.zeros(n)
    else:
        tau = _uniform(_array(node, "tau", where), "tau", where)
        if not tau > 0:
            raise NIRError(f"{where}: tau {tau} must be > 0")
        v_leak = _array(node, "v_leak", where)
        if math.isinf(tau):
            # no leak: dv/dt = (r / tau) I. snntorch writes beta = 1 as tau = dt / (1 - beta)
            # = inf with r = tau / dt = inf, meaning r / tau = 1 / dt; a finite r means no input
            if np.all(np.isinf(r)) and np.all(r > 0):
                notes.append(f"{where}: tau = r = inf (snntorch's beta = 1) read as r / tau = "
                             "1 / dt: a non-leaky neuron")
                r = np.full(n, 1.0 / opts.dt)
            elif np.any(np.isinf(r)):
                raise NIRError(f"{where}: tau = inf with some r infinite: no defined input scale")
            else:
                r = np.zeros(n)
            tau_steps, gain, drive = NONLEAKY_TAU, r * opts.dt, np.zeros(n)
        elif opts.discretisation == "euler":
            tau_steps = _rounded(tau / opts.dt, "tau / dt", where, notes)
            if tau_steps < 1:
                raise NIRError(f"{where}: tau / dt = {tau_steps:g} < 1: forward Euler is "
                               "unstable there; give a smaller --dt")
            step = 1.0 / tau_steps
        else:
            decay = math.exp(-opts.dt / tau)
            tau_steps = 1.0 / (1.0 - decay)
            step = 1.0 - decay
        if not math.isinf(tau):
            # v += step (v_leak - v + r I): I_int = step r I + step v_leak
            gain, drive = step * r, step * v_leak
    gain = np.broadcast_to(np.asarray(gain, dtype=np.float64), (n,)).copy()
    if not np.all(np.isfinite(gain)):
        raise NIRError(f"{where}: r is infinite with a finite tau: no defined input scale")
    near_one = np.abs(gain - 1.0) <= ROUND_TOLERANCE
    if np.any(near_one & (gain != 1.0)):
        notes.append(f"{where}: input scale dt r / tau within {ROUND_TOLERANCE:g} of 1 taken "
                     "as 1 (float32 rounding of the writer)")
        gain[near_one] = 1.0
    drive = np.broadcast_to(np.asarray(drive, dtype=np.float64), (n,)).copy()
    if reset == "subtract":
        pass
    elif reset == "subtract-delayed" and tau_steps >= NONLEAKY_TAU:
        notes.append(f"{where}: reset subtract-delayed equals eideploy's subtract for a "
                     "non-leaky neuron (no leak between the spike and the subtraction)")
    elif reset == "subtract-delayed":
        differences.append(f"{where}: reset subtract-delayed (the threshold subtracted one step "
                           "later, after the leak: v[t] = beta v[t-1] + I[t] - theta s[t-1]) "
                           "differs from eideploy's (v[t] = beta (v[t-1] - theta s[t-1]) + I[t]) "
                           f"by (1 - beta) theta = {theta / tau_steps:g} per spike")
    else:
        v_reset = _array(node, "v_reset", where, required=False)
        reset_to = 0.0 if v_reset is None else _uniform(v_reset, "v_reset", where)
        differences.append(f"{where}: NIR's reset to v_reset = {reset_to:g} (the membrane "
                           "set, the excess above threshold lost) differs from eideploy's "
                           "subtractive reset; if the writer subtracts (snntorch's Leaky does), "
                           "say so: --reset subtract (reset_delay=False) or subtract-delayed")
    notes.append(f"{where}: spikes at v >= threshold (eideploy) where NIR and snntorch say "
                 "v > threshold: they differ only when v equals the threshold exactly")
    return tau_steps, theta, gain, drive


def nir_to_graph(doc: dict[str, Any], opts: ImportOptions | None, source: str = "<nir>",
                 name: str = "nir") -> NIRImport:
    """The E-I graph of a NIR graph in dictionary form (module doc). A file eideploy wrote
    comes back as the graph it was; a foreign one needs ``opts`` (T and dt)."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    if meta.get("writer") == "eideploy" and "eideploy" in meta:
        graph = _from_eideploy(doc, source)
        return NIRImport(graph, [f"{source}: written by eideploy: read back as it was"], True,
                         "eideploy")
    if opts is None:
        raise NIRError(f"{source}: a NIR graph from another tool needs the number of time "
                       "steps and the time step: --T N --dt SECONDS (snntorch exports with "
                       "dt = 1e-4 s, norse with 1e-3 s)")
    if opts.T < 1 or not (opts.dt > 0 and math.isfinite(opts.dt)):
        raise NIRError(f"T must be >= 1 and dt > 0, got T={opts.T}, dt={opts.dt}")
    if opts.reset is not None and opts.reset not in RESETS:
        raise NIRError(f"reset {opts.reset!r}: use one of {', '.join(RESETS)}")
    if opts.discretisation not in DISCRETISATIONS:
        raise NIRError(f"discretisation {opts.discretisation!r}: use one of "
                       f"{', '.join(DISCRETISATIONS)}")
    if opts.encoding not in ("spikes", "direct"):
        raise NIRError(f"encoding {opts.encoding!r}: use spikes or direct")
    edges = _edges(doc, source)
    order = _chain(doc, edges, source)
    nodes = doc["nodes"]
    notes: list[str] = [f"{source}: dt = {opts.dt:g} s per step, T = {opts.T}, "
                        f"{opts.discretisation} discretisation of tau"]
    differences: list[str] = []
    in_node = nodes[order[0]]
    shape = tuple(int(s) for s in np.asarray(in_node.get("shape", []), dtype=np.int64).reshape(-1))
    if not shape or min(shape) < 1:
        raise NIRError(f"{source}: the Input node's shape {shape} is not a positive shape")
    pops = [Population("input", "input", shape)]
    projs: list[Projection] = []
    current: Population = pops[0]
    pending: _Layer | None = None
    pool, pool_scale, index = 1, 1.0, 0
    for node_name in order[1:-1]:
        node = nodes[node_name]
        where = f"{source}: node {printable(node_name, 80)!r} ({printable(node.get('type'))})"
        kind = node.get("type")
        if kind == "Flatten":
            continue  # dense projections read a map C-major, as Flatten does
        if kind in ("AvgPool2d", "SumPool2d"):
            k = _pair(node, "kernel_size", 1, where)
            if pending is not None or len(current.shape) != 3 or pool > 1:
                raise NIRError(f"{where}: eideploy pools a neuron map once, just before the "
                               "next projection")
            if _pair(node, "stride", k, where) != k or _pair(node, "padding", 0, where) != 0:
                raise NIRError(f"{where}: a pool needs stride = kernel_size and no padding")
            pool = k
            if kind == "SumPool2d":  # a sum is the average times k^2: folded into the weights
                pool_scale = float(k * k)
                notes.append(f"{where}: the sum pool is an average pool with the next "
                             f"projection's weights x {k * k}")
            continue
        if kind in ("Affine", "Linear", "Conv2d"):
            if pending is not None:
                raise NIRError(f"{where}: two projections in a row; put a neuron between them")
            pending = _projection(node, kind, where, tuple(current.shape), pool, node_name)
            pending.weight = pending.weight * pool_scale
            pool, pool_scale = 1, 1.0
            continue
        if kind in ("LIF", "IF"):
            if pending is None:
                raise NIRError(f"{where}: a neuron without a projection in front of it")
            n = int(np.prod(pending.shape))
            tau_steps, theta, gain, drive = _neuron(node, where, opts, n, notes, differences)
            index += 1
            pop = Population(f"layer{index}.exc", "exc", pending.shape, f"layer{index}",
                             {"tau": tau_steps, "v_threshold": theta, "neuron": "lif",
                              "nir_node": node_name},
                             {"gain_e": gain, "bias": gain * pending.bias + drive})
            _signed_projections(projs, pending, current, pop, f"layer{index}")
            pops.append(pop)
            current, pending = pop, None
            continue
        raise NIRError(f"{where}: eideploy imports Affine, Linear, Conv2d, AvgPool2d, SumPool2d, "
                       f"Flatten, LIF and IF nodes; a {printable(kind)} has no E-I graph form "
                       "here")
    if pool > 1:
        raise NIRError(f"{source}: a pool with no projection after it")
    if pending is not None:  # a current readout: o = W x, its time mean decides
        if np.any(pending.bias != 0):
            raise NIRError(f"{source}: node {pending.name!r}: a readout current with a bias has "
                           "no E-I graph form (the readout adds no bias); end the graph with a "
                           "neuron, or drop the bias")
        readout = Population("readout", "readout", pending.shape, "readout",
                             {"mode": "current"})
        _signed_projections(projs, pending, current, readout, "readout")
        mode = "current"
    else:
        if current.role == "input":
            raise NIRError(f"{source}: no projection between the Input and the Output")
        # the last layer's spikes counted: identity weights into an IF readout of threshold 1
        readout = Population("readout", "readout", current.shape, "readout",
                             {"mode": "spiking", "neuron": "if", "v_threshold": 1.0})
        projs.append(Projection("readout.ee", current.name, "readout", "exc", "dense",
                                np.eye(current.size)))
        mode = "spiking"
        notes.append(f"{source}: the class is the output neuron with the most spikes (ties: "
                     "the first), counted by a spiking readout")
    pops.append(readout)
    if differences and not opts.approximate:
        raise NIRError("the NIR graph's neurons differ from eideploy's: " + "; ".join(
            differences) + ". Nothing was imported; accept the differences with --approximate")
    notes += [f"APPROXIMATION: {d}" for d in differences]
    graph = EIGraph(name, opts.T, pops, projs,
                    {"population": "input", "encoding": opts.encoding},
                    {"population": "readout", "mode": mode, "theta_out": 1.0},
                    {"stabilisation": "fixed-eps", "eps": 0.0},
                    {"source": "nir", "nir_file": Path(source).name, "dt": opts.dt,
                     "reset": opts.reset or "metadata/to-v_reset",
                     "discretisation": opts.discretisation})
    try:
        graph.validate()
    except GraphError as exc:
        raise NIRError(f"{source}: {exc}") from None
    return NIRImport(graph, notes, not differences, "foreign")


def _signed_projections(projs: list[Projection], layer: _Layer, source: Population,
                        target: Population, prefix: str) -> None:
    """A signed weight as an ``exc`` projection (positive part) and a ``sub`` one (the
    magnitude of the negative part): the sign becomes the synapse's kind (AMPA / GABA)."""
    positive = np.maximum(layer.weight, 0.0)
    negative = np.maximum(-layer.weight, 0.0)
    projs.append(Projection(f"{prefix}.ee", source.name, target.name, "exc", layer.op, positive,
                            attrs=dict(layer.attrs)))
    if np.any(negative > 0):
        projs.append(Projection(f"{prefix}.sub", source.name, target.name, "sub", layer.op,
                                negative, attrs=dict(layer.attrs)))


def read_nir(path: str | Path, opts: ImportOptions | None = None) -> NIRImport:
    """The E-I graph of the NIR file at ``path`` (:func:`nir_to_graph` on the bounded read)."""
    doc = read_nir_dict(path)
    return nir_to_graph(doc, opts, printable(path), name=Path(path).stem or "nir")
