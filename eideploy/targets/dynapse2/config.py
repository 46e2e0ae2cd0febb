"""The DYNAP-SE2 configuration model (``dynapse2.json``) and its reverse path to an E-I graph.

The configuration is plain JSON-able data describing exactly what is written to the chips: per
used chip and core the parameter group, the population slices, the DC value, the four base
weights and their bias codes, and per neuron its CAM entries (tag, dendrite, weight mask, stp,
delay) and SRAM entries (destination chip and hops, core mask, tag); plus the host's input and
readout channel maps and the graph's structure (populations and projections, no weights).

Layout::

    {"format": "eideploy-dynapse2-config", "format_version": 1,
     "target": {...target description, without its file path...},
     "chips": [{"id", "position": [x, y], "cores": [
        {"id", "role", "parameter_group", "populations": [{population, start, stop, offset}],
         "neuron_params", "dc", "base_weights": [4 floats, graph units],
         "dendrite_scales": {"ampa": s, "gaba": s, "shunt": s},
         "bias_codes": {NAME: {coarse, fine, requested, realised, error}},
         "neurons": [{"id", "population", "index",
                      "cam": [{tag, dendrite, weight_mask, stp, delay}],
                      "sram": [{chip, x_hop, y_hop, core_mask, tag}]}]}]}],
     "input_channels": [{population, channel, tag, destinations: [{chip, core_mask}]}],
     "readout_channels": [{class, chip, core, neuron, tag}],   # via the monitoring entry
     "graph": {"name", "T", "input", "readout", "division", "meta",
               "populations": [{name, role, shape, layer, params}],
               "projections": [{name, source, target, kind}]}}

A CAM entry of dendrite ``d`` with weight mask ``m`` on a core weighs
``dendrite_scales[d] * level(m)``, ``level(m)`` the sum of the ``base_weights`` that ``m`` selects:
the scale is that dendrite's gain bias over its reference (``DEAM_EGAIN_P``, ``DEGA_IGAIN_P``,
``DESC_IGAIN_P``; ``compile.dendrite_gain_reference``). A core without ``dendrite_scales`` (a file
written before the field existed) has every scale 1.

A neuron's ``sram`` lists its network destinations only: the reserved fourth SRAM entry
(monitoring) is how readout spikes reach the host, identified by the tag in ``readout_channels``.

:func:`config_to_graph` reads only what the chips hold (CAM tags resolved through the SRAM entries
and input channels that send them, weights as base-weight subset sums by mask, DC per core) and
gives back the quantized graph exactly: the round trip proves the configuration loses nothing.

:func:`write_config` writes deterministic bytes: keys sorted, compact separators, floats in
Python's shortest round-trip ``repr`` (so every float reads back bit for bit), no NaN/inf.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import atomic_write_bytes, json_plain
from ...exportdir import verify_export
from ...graph.ir import EIGraph, Population, Projection
from ...quant import subset_sums
from ...safefile import MAX_JSON_BYTES, UnsafeFileError, load_json, printable
from .biases import COARSE_VALUES, FINE_VALUES
from .place import Placement
from .quantize import QuantizedGraph, target_dendrites
from .route import Routing, layout_positions
from .target import CHIP_LAYOUTS, Target, TargetError, known_targets, load_target

__all__ = ["CONFIG_FORMAT", "CONFIG_FORMAT_VERSION", "ConfigError", "build_config",
           "write_config", "read_config", "check_config", "shipped_target", "config_to_graph",
           "config_bytes", "target_description", "exported_graph", "MAX_CONFIG_BYTES"]

CONFIG_FORMAT = "eideploy-dynapse2-config"
CONFIG_FORMAT_VERSION = 1
#: The largest dynapse2.json read (a full four-chip board's is about 15 MB).
MAX_CONFIG_BYTES = MAX_JSON_BYTES
_TOP_FIELDS = ("format", "format_version", "target", "chips", "input_channels",
               "readout_channels", "graph")


class ConfigError(ValueError):
    """A configuration file or document that is malformed; the message names file and field."""


# --------------------------------------------------------------------------- building
def target_description(target: Target) -> dict[str, Any]:
    """The target as JSON data without its file path (the bytes must not depend on where the
    target file lives)."""
    doc = target.to_dict()
    doc.pop("source", None)
    return json_plain(doc)


def build_config(qgraph: QuantizedGraph, placement: Placement, routing: Routing, target: Target,
                 *, bias_codes: Mapping[tuple[int, int], Mapping[str, Mapping[str, Any]]]
                 | None = None) -> dict[str, Any]:
    """The configuration document of a quantized, placed and routed graph.

    ``bias_codes[(chip, core)][NAME]`` = ``{coarse, fine, requested, realised, error}`` (filled by
    ``compile_graph``; empty per core when not given).
    """
    graph = qgraph.graph
    cam_rows: dict[str, tuple[list, list, list, list[int]]] = {}
    sram_rows: dict[str, list[list[dict[str, int]]]] = {}
    for name, table in routing.cam.items():
        cam_rows[name] = (table.tag.tolist(), table.dendrite.tolist(),
                          table.weight_mask.tolist(), table.offsets.tolist())
        sram_rows[name] = routing.sram_entries(name)
    chips: dict[int, dict[str, Any]] = {}
    dendrites = target_dendrites(target)
    for assignment in placement.cores:
        key = assignment.key
        codebook = qgraph.codebooks[key]
        scales = qgraph.dendrite_scales.get(key, {})
        neurons = []
        for (name, start, stop), offset in zip(assignment.slices, assignment.offsets,
                                               strict=True):
            tags, entry_dendrites, masks, bounds = cam_rows[name]
            srams = sram_rows[name]
            for index in range(start, stop):
                lo, hi = bounds[index], bounds[index + 1]
                neurons.append({
                    "id": offset + index - start, "population": name, "index": index,
                    "cam": [{"tag": t, "dendrite": d, "weight_mask": m, "stp": False,
                             "delay": 0}
                            for t, d, m in zip(tags[lo:hi], entry_dendrites[lo:hi],
                                               masks[lo:hi], strict=True)],
                    "sram": srams[index]})
        codes = {} if bias_codes is None else bias_codes.get(key, {})
        chip = chips.setdefault(assignment.chip, {
            "id": assignment.chip,
            "position": list(routing.chip_positions[assignment.chip]), "cores": []})
        chip["cores"].append({
            "id": assignment.core, "role": assignment.role,
            "parameter_group": assignment.group,
            "populations": [{"population": p, "start": a, "stop": b, "offset": o}
                            for (p, a, b), o in zip(assignment.slices, assignment.offsets,
                                                    strict=True)],
            "neuron_params": json_plain(assignment.params),
            "dc": float(qgraph.dc[key]),
            "base_weights": [float(b) for b in codebook.bases],
            "dendrite_scales": {d: float(scales.get(d, 1.0)) for d in dendrites},
            "bias_codes": json_plain({name: dict(code) for name, code in sorted(codes.items())}),
            "neurons": neurons})
    doc = {
        "format": CONFIG_FORMAT, "format_version": CONFIG_FORMAT_VERSION,
        "target": target_description(target),
        "chips": [chips[c] for c in sorted(chips)],
        "input_channels": json_plain(routing.input_channels),
        "readout_channels": json_plain(routing.readout_channels),
        "graph": {
            "name": graph.name, "T": int(graph.T), "input": json_plain(graph.input),
            "readout": json_plain(graph.readout), "division": json_plain(graph.division),
            "meta": json_plain(graph.meta),
            "populations": [{"name": p.name, "role": p.role, "shape": [int(s) for s in p.shape],
                             "layer": p.layer, "params": json_plain(p.params)}
                            for p in graph.populations],
            "projections": [{"name": p.name, "source": p.source, "target": p.target,
                             "kind": p.kind} for p in graph.projections]},
    }
    return doc


# --------------------------------------------------------------------------- files
def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def config_bytes(config: Mapping[str, Any]) -> bytes:
    """The exact bytes ``write_config`` writes: sorted keys, compact, shortest float repr."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False,
                          default=_default)
    except ValueError as exc:
        raise ConfigError(f"configuration holds a NaN or infinite value ({exc})") from None
    return (text + "\n").encode("utf-8")


def write_config(config: Mapping[str, Any], path: str | Path) -> None:
    """Write ``config`` to ``path`` atomically (a failed write leaves no partial file)."""
    atomic_write_bytes(path, config_bytes(config))


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a ``dynapse2.json``; :class:`ConfigError` names the file and the field.

    Only a regular file of at most :data:`MAX_CONFIG_BYTES` is opened; the document is then
    checked value by value against the *shipped* target it names (:func:`check_config`), never
    against the target block inside the file."""
    path = Path(path)
    try:
        doc = load_json(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"{printable(path)}: no such configuration file (written as "
                          "dynapse2.json by 'eideploy export --target dynapse2')") from None
    except UnsafeFileError as exc:
        raise ConfigError(str(exc)) from None
    _check_header(doc, printable(path))
    check_config(doc, source=printable(path))
    return doc


def _check_header(doc: Any, source: str) -> None:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a configuration is a JSON object, got "
                          f"{type(doc).__name__}")
    if doc.get("format") != CONFIG_FORMAT:
        raise ConfigError(f"{source}: field 'format' must be {CONFIG_FORMAT!r}, got "
                          f"{doc.get('format')!r}: not an eideploy DYNAP-SE2 configuration")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{source}: field 'format_version' must be a positive integer, got "
                          f"{version!r}")
    if version > CONFIG_FORMAT_VERSION:
        raise ConfigError(f"{source}: field 'format_version' is {version}, newer than this "
                          f"eideploy reads ({CONFIG_FORMAT_VERSION}); upgrade eideploy")
    missing = [f for f in _TOP_FIELDS if f not in doc]
    if missing:
        raise ConfigError(f"{source}: missing field(s) {', '.join(repr(m) for m in missing)}")


# --------------------------------------------------------------------------- checking a file
#: Target fields a file's target block may hold below the shipped target's value (an export for
#: a board with fewer chips, ``--chips N``, or a target file with smaller cores); besides these
#: only the chip layout may differ (one of ``CHIP_LAYOUTS``): every other field must equal the
#: shipped target's.
_AT_MOST = ("chips_per_board", "neurons_per_core", "cam_entries_per_neuron", "tags")
#: The largest population and time window a configuration may describe (far above any
#: DYNAP-SE2 network; they bound what reading the file allocates).
_MAX_POPULATION = 1 << 22
_MAX_T = 1 << 16
_FIX = "export the model again"


def shipped_target(config: Mapping[str, Any], source: str = "<config>") -> Target:
    """The target a configuration was compiled for, as *shipped* with eideploy and narrowed to
    the fields its target block may narrow (:data:`_AT_MOST`: fewer chips, smaller cores); a
    block that claims more than the shipped target, or differs in any other field, is refused
    with a :class:`ConfigError` naming the field."""
    f = _Fields(source)
    block = f.get(config, "target", "")
    if not isinstance(block, dict):
        raise f.fail("target", "must be an object (the target description)")
    name = block.get("name")
    if not isinstance(name, str) or name not in known_targets():
        raise f.fail("target.name", f"is {printable(repr(name), 60)}, not a shipped target "
                                    f"({', '.join(known_targets())}): a configuration is checked "
                                    "against the shipped target it names")
    try:
        shipped = load_target(name)
    except TargetError as exc:  # a broken installation, not a broken export
        raise ConfigError(f"{source}: the shipped target {name!r} cannot be read: {exc}"
                          ) from None
    narrowed: dict[str, int] = {}
    for key in _AT_MOST:
        limit = getattr(shipped, key)
        narrowed[key] = f.integer(block, key, "target", 1, limit)
    layout = block.get("chip_layout")
    if layout not in CHIP_LAYOUTS:
        raise f.fail("target.chip_layout", f"is {printable(repr(layout), 40)}, not one of "
                                           f"{', '.join(CHIP_LAYOUTS)}")
    expected = dataclasses.replace(shipped, **narrowed, chip_layout=layout)
    reference = target_description(expected)
    for key in sorted(set(reference) | set(block)):
        if key not in block:
            raise f.fail(f"target.{key}", f"is missing (the shipped target {name} has "
                                          f"{printable(repr(reference[key]), 80)})")
        # compared as JSON text: 4.0 is not 4, true is not 1, at every depth
        if key not in reference or json.dumps(block[key], sort_keys=True, default=repr) != (
                json.dumps(reference[key], sort_keys=True)):
            shown = printable(repr(reference.get(key)), 80)
            raise f.fail(f"target.{key}", f"is {printable(repr(block[key]), 80)}, but the "
                                          f"shipped target {name} has {shown}; {_FIX}")
    return expected


def check_config(config: Mapping[str, Any], source: str = "<config>") -> Target:
    """Check every value of a configuration document against the shipped target it names
    (:func:`shipped_target`): chips, cores and neurons within the board and unique; per core at
    most ``neurons_per_core`` neurons; per neuron at most ``cam_entries_per_neuron`` CAM entries
    (tag below ``tags`` and not the control tag, a dendrite of the target, a weight mask of
    ``weight_mask_bits``, a delay class, stp a bool) and at most the usable SRAM entries (chip,
    core mask, hops within the hop range, tag); finite base weights, DC and scales; bias codes
    of known names with integer coarse and fine codes in range; the host's channel maps; the
    graph's populations of bounded size. Returns the target checked against; raises
    :class:`ConfigError` naming the file and the field of the first problem."""
    _check_header(config, source)
    target = shipped_target(config, source)
    f = _Fields(source)
    sizes = _check_graph_section(f, config, target)
    chips = f.listing(config, "chips", "")
    if len(chips) > target.chips_per_board:
        raise f.fail("chips", f"lists {len(chips)} chips; the target has "
                              f"{target.chips_per_board}")
    positions = layout_positions(target.chip_layout, target.chips_per_board)
    seen_chips: set[int] = set()
    for ci, chip in enumerate(chips):
        cw = f"chips[{ci}]"
        chip_id = _unique_id(f, chip, cw, target.chips_per_board, seen_chips, "chip")
        position = f.get(chip, "position", cw)
        if position != list(positions[chip_id]) or any(type(v) is not int for v in position):
            raise f.fail(f"{cw}.position", f"is {printable(repr(position), 40)}; chip {chip_id} "
                                           f"of a {target.chip_layout} board is at "
                                           f"{list(positions[chip_id])}")
        cores = f.listing(chip, "cores", cw)
        seen_cores: set[int] = set()
        for ki, core in enumerate(cores):
            kw = f"{cw}.cores[{ki}]"
            _unique_id(f, core, kw, target.cores_per_chip, seen_cores, "core")
            _check_core(f, core, kw, target, sizes)
    _check_channels(f, config, target, sizes)
    return target


def _unique_id(f: _Fields, node: Any, where: str, count: int, seen: set[int], what: str) -> int:
    """``node["id"]``: an integer in ``0..count-1`` not in ``seen`` (then added to it)."""
    value = f.integer(node, "id", where, 0, count - 1)
    if value in seen:
        raise f.fail(f"{where}.id", f"is {what} {value} a second time")
    seen.add(value)
    return value


def _number(f: _Fields, node: Any, key: str, where: str, low: float | None = None) -> float:
    value = f.get(node, key, where)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or (low is not None and value < low)):
        bound = "" if low is None else f" >= {low:g}"
        raise f.fail(f"{where}.{key}", f"must be a finite number{bound}, got "
                                       f"{printable(repr(value), 60)}")
    return float(value)


def _text(f: _Fields, node: Any, key: str, where: str) -> str:
    value = f.get(node, key, where)
    if not isinstance(value, str):
        raise f.fail(f"{where}.{key}", f"must be a string, got {printable(repr(value), 60)}")
    return value


def _flat_params(f: _Fields, node: Any, key: str, where: str) -> None:
    """Neuron parameters: an object of JSON values whose numbers are all finite."""
    params = f.get(node, key, where)
    if not isinstance(params, dict):
        raise f.fail(f"{where}.{key}", f"must be an object, got {type(params).__name__}")
    stack: list[tuple[str, Any]] = [(f"{where}.{key}.{printable(k, 40)}", v)
                                    for k, v in params.items()]
    while stack:
        at, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{at}.{printable(k, 40)}", v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{at}[{i}]", v) for i, v in enumerate(value))
        elif not (value is None or isinstance(value, (int, str, bool)) or (
                isinstance(value, float) and math.isfinite(value))):
            raise f.fail(at, f"must be a finite number, string or bool, got "
                             f"{printable(repr(value), 60)}")


def _check_graph_section(f: _Fields, config: Mapping[str, Any], target: Target
                         ) -> dict[str, int]:
    """The graph's populations: names unique, shapes of positive integers of bounded size, the
    on-chip ones within the board; returns the size of each."""
    g = f.get(config, "graph", "")
    f.integer(g, "T", "graph", 1, _MAX_T)
    _text(f, g, "name", "graph")
    for key in ("input", "readout", "division"):
        if not isinstance(f.get(g, key, "graph"), dict):
            raise f.fail(f"graph.{key}", "must be an object")
    sizes: dict[str, int] = {}
    on_chip = 0
    for i, p in enumerate(f.listing(g, "populations", "graph")):
        where = f"graph.populations[{i}]"
        name = _text(f, p, "name", where)
        if name in sizes:
            raise f.fail(f"{where}.name", f"is {name!r} a second time")
        role = _text(f, p, "role", where)
        shape = f.listing(p, "shape", where)
        if not shape or len(shape) > 8 or any(type(s) is not int or not 1 <= s <= _MAX_POPULATION
                                              for s in shape):
            raise f.fail(f"{where}.shape", f"must list 1..8 positive integers, got "
                                           f"{printable(repr(shape), 60)}")
        size = math.prod(shape)
        if size > _MAX_POPULATION:
            raise f.fail(f"{where}.shape", f"holds {size} neurons, over {_MAX_POPULATION}")
        _flat_params(f, p, "params", where)
        sizes[name] = size
        on_chip += size if role != "input" else 0
    if on_chip > target.neurons_per_board:
        raise f.fail("graph.populations", f"hold {on_chip} on-chip neurons; the target has "
                                          f"{target.neurons_per_board}")
    for i, p in enumerate(f.listing(g, "projections", "graph")):
        where = f"graph.projections[{i}]"
        for key in ("name", "source", "target", "kind"):
            _text(f, p, key, where)
    return sizes


def _check_core(f: _Fields, core: Any, kw: str, target: Target, sizes: dict[str, int]) -> None:
    """One core: parameters, weights, bias codes, population slices, neurons."""
    f.integer(core, "parameter_group", kw, 0, 1 << 16)
    _text(f, core, "role", kw)
    _flat_params(f, core, "neuron_params", kw)
    _number(f, core, "dc", kw)
    bases = f.listing(core, "base_weights", kw)
    if len(bases) != target.base_weights_per_core:
        raise f.fail(f"{kw}.base_weights", f"holds {len(bases)} values, the target has "
                                           f"{target.base_weights_per_core} base weights per core")
    for i, value in enumerate(bases):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value < 0):
            raise f.fail(f"{kw}.base_weights[{i}]", f"must be a finite number >= 0, got "
                                                    f"{printable(repr(value), 60)}")
    scales = core.get("dendrite_scales", {})
    if not isinstance(scales, dict):
        raise f.fail(f"{kw}.dendrite_scales", "must be an object {dendrite: scale}")
    for name in scales:
        if name not in target.dendrites:
            raise f.fail(f"{kw}.dendrite_scales.{printable(name, 40)}",
                         "names no dendrite of the target")
        if _number(f, scales, name, f"{kw}.dendrite_scales", 0.0) == 0:
            raise f.fail(f"{kw}.dendrite_scales.{name}", "must be a finite number > 0, got 0")
    codes = f.get(core, "bias_codes", kw)
    if not isinstance(codes, dict):
        raise f.fail(f"{kw}.bias_codes", "must be an object {NAME: {coarse, fine, ...}}")
    known = set(target.bias_names) | set(target.chip_bias_names)
    for name, code in codes.items():
        cw = f"{kw}.bias_codes.{printable(name, 40)}"
        if name not in known:
            raise f.fail(cw, "is not a bias of the target")
        f.integer(code, "coarse", cw, 0, COARSE_VALUES - 1)
        f.integer(code, "fine", cw, 0, FINE_VALUES - 1)
        for key in ("requested", "realised", "error"):
            if isinstance(code, dict) and key in code and code[key] is not None:
                _number(f, code, key, cw)
    for i, piece in enumerate(f.listing(core, "populations", kw)):
        pw = f"{kw}.populations[{i}]"
        name = _text(f, piece, "population", pw)
        if name not in sizes:
            raise f.fail(f"{pw}.population", f"names {printable(repr(name), 60)}, which is not "
                                             "in graph.populations")
        start = f.integer(piece, "start", pw, 0, sizes[name])
        f.integer(piece, "stop", pw, start, sizes[name])
        f.integer(piece, "offset", pw, 0, target.neurons_per_core - 1)
    neurons = f.listing(core, "neurons", kw)
    if len(neurons) > target.neurons_per_core:
        raise f.fail(f"{kw}.neurons", f"lists {len(neurons)} neurons; a core of the target has "
                                      f"{target.neurons_per_core}")
    seen: set[int] = set()
    for ni, neuron in enumerate(neurons):
        nw = f"{kw}.neurons[{ni}]"
        _unique_id(f, neuron, nw, target.neurons_per_core, seen, "neuron")
        name = _text(f, neuron, "population", nw)
        if name not in sizes:
            raise f.fail(f"{nw}.population", f"names {printable(repr(name), 60)}, which is not "
                                             "in graph.populations")
        f.integer(neuron, "index", nw, 0, sizes[name] - 1)
        _check_cam(f, f.listing(neuron, "cam", nw), f"{nw}.cam", target)
        _check_sram(f, f.listing(neuron, "sram", nw), f"{nw}.sram", target)


_CAM_KEYS = frozenset(("tag", "dendrite", "weight_mask", "stp", "delay"))


def _tag(f: _Fields, node: Any, where: str, target: Target) -> int:
    tag = f.integer(node, "tag", where, 0, target.tags - 1)
    if tag == target.control_tag:
        raise f.fail(f"{where}.tag", f"is {tag}, the control tag the host reserves for its "
                                     "control events")
    return tag


def _check_cam(f: _Fields, cam: list[Any], where: str, target: Target) -> None:
    if len(cam) > target.cam_entries_per_neuron:
        raise f.fail(where, f"lists {len(cam)} entries; a neuron of the target has "
                            f"{target.cam_entries_per_neuron}")
    masks = (1 << target.weight_mask_bits) - 1
    for ei, entry in enumerate(cam):
        ew = f"{where}[{ei}]"
        if not isinstance(entry, dict) or set(entry) != _CAM_KEYS:
            raise f.fail(ew, f"must be an object of exactly {sorted(_CAM_KEYS)}")
        _tag(f, entry, ew, target)
        if entry["dendrite"] not in target.dendrites or entry["dendrite"] == "none":
            raise f.fail(f"{ew}.dendrite", f"is {printable(repr(entry['dendrite']), 40)}, not "
                                           f"a dendrite of the target "
                                           f"({', '.join(d for d in target.dendrites)})")
        f.integer(entry, "weight_mask", ew, 0, masks)
        f.integer(entry, "delay", ew, 0, target.delay_classes - 1)
        if type(entry["stp"]) is not bool:
            raise f.fail(f"{ew}.stp", f"must be true or false, got "
                                      f"{printable(repr(entry['stp']), 40)}")


def _check_sram(f: _Fields, sram: list[Any], where: str, target: Target) -> None:
    if len(sram) > target.usable_sram:
        raise f.fail(where, f"lists {len(sram)} entries; a neuron of the target has "
                            f"{target.usable_sram} (one of {target.sram_entries_per_neuron} is "
                            "reserved for monitoring)")
    low, high = target.hop_range
    for si, entry in enumerate(sram):
        sw = f"{where}[{si}]"
        f.integer(entry, "chip", sw, 0, target.chips_per_board - 1)
        f.integer(entry, "core_mask", sw, 0, (1 << target.cores_per_chip) - 1)
        f.integer(entry, "x_hop", sw, low, high)
        f.integer(entry, "y_hop", sw, low, high)
        _tag(f, entry, sw, target)


def _check_channels(f: _Fields, config: Mapping[str, Any], target: Target,
                    sizes: dict[str, int]) -> None:
    """The host's input channels (population, channel, tag, destinations) and readout
    channels (class, chip, core, neuron, tag)."""
    channels = f.listing(config, "input_channels", "")
    if len(channels) > sum(sizes.values()):
        raise f.fail("input_channels", f"lists {len(channels)} channels, more than the graph "
                                       f"has neurons ({sum(sizes.values())})")
    for ii, channel in enumerate(channels):
        iw = f"input_channels[{ii}]"
        name = _text(f, channel, "population", iw)
        if name not in sizes:
            raise f.fail(f"{iw}.population", f"names {printable(repr(name), 60)}, which is not "
                                             "in graph.populations")
        f.integer(channel, "channel", iw, 0, sizes[name] - 1)
        if f.get(channel, "tag", iw) is not None:
            _tag(f, channel, iw, target)
        for di, dest in enumerate(f.listing(channel, "destinations", iw)):
            dw = f"{iw}.destinations[{di}]"
            f.integer(dest, "chip", dw, 0, target.chips_per_board - 1)
            f.integer(dest, "core_mask", dw, 0, (1 << target.cores_per_chip) - 1)
    readouts = f.listing(config, "readout_channels", "")
    if len(readouts) > target.neurons_per_board:
        raise f.fail("readout_channels", f"lists {len(readouts)} channels; the board has "
                                         f"{target.neurons_per_board} neurons")
    for ri, channel in enumerate(readouts):
        rw = f"readout_channels[{ri}]"
        f.integer(channel, "class", rw, 0, max(len(readouts) - 1, 0))
        f.integer(channel, "chip", rw, 0, target.chips_per_board - 1)
        f.integer(channel, "core", rw, 0, target.cores_per_chip - 1)
        f.integer(channel, "neuron", rw, 0, target.neurons_per_core - 1)
        _tag(f, channel, rw, target)


# --------------------------------------------------------------------------- the reverse path
class _Fields:
    """Typed access that names the field path in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: field '{where}' {message}")

    def get(self, node: Any, key: str, where: str) -> Any:
        if not isinstance(node, dict) or key not in node:
            raise self.fail(f"{where}.{key}" if where else key, "is missing")
        return node[key]

    def integer(self, node: Any, key: str, where: str, low: int = 0,
                high: int | None = None) -> int:
        value = self.get(node, key, where)
        if (not isinstance(value, int) or isinstance(value, bool) or value < low
                or (high is not None and value > high)):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            raise self.fail(f"{where}.{key}", f"must be an integer {bounds}, got "
                                              f"{printable(repr(value), 60)}")
        return value

    def listing(self, node: Any, key: str, where: str) -> list[Any]:
        value = self.get(node, key, where)
        if not isinstance(value, list):
            raise self.fail(f"{where}.{key}", f"must be a list, got {type(value).__name__}")
        return value


def _dendrite_scales(f: _Fields, core: Any, where: str, code: Mapping[str, int]) -> np.ndarray:
    """A core's ``dendrite_scales`` in ``code`` order (1 for a dendrite it does not name)."""
    out = np.ones(len(code))
    doc = core.get("dendrite_scales", {}) if isinstance(core, dict) else {}
    if not isinstance(doc, dict):
        raise f.fail(f"{where}.dendrite_scales", f"must be an object {{dendrite: scale}}, got "
                                                 f"{type(doc).__name__}")
    for name, value in doc.items():
        if name not in code:
            raise f.fail(f"{where}.dendrite_scales.{name}", "names a dendrite that carries no "
                                                            f"projection kind ({sorted(code)})")
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value <= 0):
            raise f.fail(f"{where}.dendrite_scales.{name}", f"must be a finite number > 0, got "
                                                            f"{value!r}")
        out[code[name]] = float(value)
    return out


@dataclass(frozen=True)
class _Board:
    """The target fields the reverse path needs: chip size, tags, base weights, dendrites."""

    cores_per_chip: int
    chips_per_board: int
    tags: int
    base_weights: int
    dendrite_kind: dict[str, str]  # dendrite -> the projection kind it carries
    dendrite_code: dict[str, int]  # dendrite -> column of a core's scales (sorted by name)

    @property
    def cores(self) -> int:
        return self.cores_per_chip * self.chips_per_board


def _read_board(f: _Fields, config: Mapping[str, Any]) -> _Board:
    tgt = f.get(config, "target", "")
    cpc = f.integer(tgt, "cores_per_chip", "target", 1)
    chips_per_board = f.integer(tgt, "chips_per_board", "target", 1)
    n_tags = f.integer(tgt, "tags", "target", 1)
    n_base = f.integer(tgt, "base_weights_per_core", "target", 1, 8)
    kind_dendrites = f.get(tgt, "kind_dendrites", "target")
    dendrite_kind = {d: k for k, d in dict(kind_dendrites).items()}
    return _Board(cpc, chips_per_board, n_tags, n_base, dendrite_kind,
                  {d: i for i, d in enumerate(sorted(dendrite_kind))})


@dataclass(frozen=True)
class _Neurons:
    """The graph's populations laid end to end: one global id per neuron."""

    names: list[str]
    sizes: list[int]
    starts: np.ndarray  # (populations + 1,) first global id of each, then the total
    index_of: dict[str, int]  # name -> position

    @property
    def total(self) -> int:
        return int(self.starts[-1])

    def population_of(self, gid: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, gid, side="right") - 1

    def neuron_id(self, f: _Fields, pop: Any, index: Any, where: str) -> int:
        index_of = self.index_of
        if pop not in index_of:
            raise f.fail(where, f"names population {pop!r}, which is not in graph.populations")
        if not isinstance(index, int) or not 0 <= index < self.sizes[index_of[pop]]:
            raise f.fail(where, f"neuron index {index!r} is outside population {pop} "
                                f"({self.sizes[index_of[pop]]} neurons)")
        return int(self.starts[index_of[pop]] + index)


def _read_neurons(f: _Fields, pop_docs: list[Any]) -> _Neurons:
    names: list[str] = []
    sizes: list[int] = []
    for i, p in enumerate(pop_docs):
        where = f"graph.populations[{i}]"
        names.append(str(f.get(p, "name", where)))
        shape = f.listing(p, "shape", where)
        sizes.append(int(math.prod(int(s) for s in shape)))
    return _Neurons(names, sizes, np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
                    {n: i for i, n in enumerate(names)})


class _Tags:
    """Which neuron sends each (core, tag): filled from SRAM entries and input channels."""

    def __init__(self, f: _Fields, board: _Board) -> None:
        self.f, self.board = f, board
        self.sender = np.full(board.cores * board.tags, -1, dtype=np.int64)

    def address(self, dest_chip: int, mask: int, tag: int, who: int, where: str) -> None:
        """``who`` sends ``tag`` to the cores of ``dest_chip`` that ``mask`` selects."""
        cpc, n_tags = self.board.cores_per_chip, self.board.tags
        if not 0 <= tag < n_tags:
            raise self.f.fail(where, f"tag {tag} is outside 0..{n_tags - 1}")
        for bit in range(cpc):
            if mask >> bit & 1:
                slot = (dest_chip * cpc + bit) * n_tags + tag
                if self.sender[slot] not in (-1, who):
                    raise self.f.fail(where, f"tag {tag} reaches core ({dest_chip}, {bit}) from "
                                             "two senders: tags must be distinct per destination "
                                             "core")
                self.sender[slot] = who

    def destination(self, node: Any, where: str) -> tuple[int, int]:
        """An SRAM entry's or input destination's (chip, core_mask)."""
        return (self.f.integer(node, "chip", where, 0, self.board.chips_per_board - 1),
                self.f.integer(node, "core_mask", where, 0,
                               (1 << self.board.cores_per_chip) - 1))


@dataclass
class _Cores:
    """What the cores hold: per core the weight levels and dendrite scales, per neuron its core
    and DC, and every CAM entry (listening neuron, core, tag, dendrite, weight mask)."""

    levels: np.ndarray  # (core, mask) -> subset sum of the core's base weights
    scales: np.ndarray  # (core, dendrite) -> s_d
    neuron_core: np.ndarray
    neuron_dc: np.ndarray
    cam_target: list[int] = field(default_factory=list)
    cam_core: list[int] = field(default_factory=list)
    cam_tag: list[int] = field(default_factory=list)
    cam_dendrite: list[str] = field(default_factory=list)
    cam_mask: list[int] = field(default_factory=list)


def _read_cores(f: _Fields, config: Mapping[str, Any], board: _Board, neurons: _Neurons,
                tags: _Tags) -> _Cores:
    """Step 1, cores: base weights, dendrite scales, DC, each neuron's CAM entries; its SRAM
    entries go to ``tags``."""
    cpc = board.cores_per_chip
    cores = _Cores(levels=np.zeros((board.cores, 1 << board.base_weights)),
                   scales=np.ones((board.cores, len(board.dendrite_kind))),
                   neuron_core=np.full(neurons.total, -1, dtype=np.int64),
                   neuron_dc=np.zeros(neurons.total))
    for ci, chip in enumerate(f.listing(config, "chips", "")):
        cw = f"chips[{ci}]"
        chip_id = f.integer(chip, "id", cw, 0, board.chips_per_board - 1)
        for ki, core in enumerate(f.listing(chip, "cores", cw)):
            kw = f"{cw}.cores[{ki}]"
            gc = chip_id * cpc + f.integer(core, "id", kw, 0, cpc - 1)
            bases = f.listing(core, "base_weights", kw)
            if len(bases) != board.base_weights:
                raise f.fail(f"{kw}.base_weights", f"holds {len(bases)} values, the target has "
                                                   f"{board.base_weights} base weights per core")
            cores.levels[gc] = subset_sums(np.asarray(bases, dtype=np.float64))
            cores.scales[gc] = _dendrite_scales(f, core, kw, board.dendrite_code)
            dc = float(f.get(core, "dc", kw))
            for ni, neuron in enumerate(f.listing(core, "neurons", kw)):
                _read_neuron(f, neuron, f"{kw}.neurons[{ni}]", gc, dc, cores, neurons, tags)
    return cores


def _read_neuron(f: _Fields, neuron: Any, nw: str, gc: int, dc: float, cores: _Cores,
                 neurons: _Neurons, tags: _Tags) -> None:
    """One neuron of core ``gc``: its place, its CAM entries and the tags its SRAM sends."""
    gid = neurons.neuron_id(f, f.get(neuron, "population", nw), f.get(neuron, "index", nw), nw)
    if cores.neuron_core[gid] != -1:
        raise f.fail(nw, "places a neuron that another core already holds")
    cores.neuron_core[gid], cores.neuron_dc[gid] = gc, dc
    cam = f.listing(neuron, "cam", nw)
    try:
        cores.cam_tag.extend(e["tag"] for e in cam)
        cores.cam_dendrite.extend(e["dendrite"] for e in cam)
        cores.cam_mask.extend(e["weight_mask"] for e in cam)
        timed = any(e["stp"] for e in cam)  # a delay class is timing only
    except (KeyError, TypeError) as exc:
        raise f.fail(f"{nw}.cam", f"has an entry without {exc}") from None
    if timed:
        raise f.fail(f"{nw}.cam", "uses short-term plasticity, which an E-I "
                                  "graph does not have")
    cores.cam_target.extend([gid] * len(cam))
    cores.cam_core.extend([gc] * len(cam))
    for si, entry in enumerate(f.listing(neuron, "sram", nw)):
        sw = f"{nw}.sram[{si}]"
        tags.address(*tags.destination(entry, sw), f.integer(entry, "tag", sw), gid, sw)


def _read_input_channels(f: _Fields, config: Mapping[str, Any], neurons: _Neurons,
                         tags: _Tags) -> None:
    """Step 2, tags: the host's input channels send their tags as the input neurons."""
    for ii, channel in enumerate(f.listing(config, "input_channels", "")):
        iw = f"input_channels[{ii}]"
        tag = f.get(channel, "tag", iw)
        if tag is None:
            continue
        gid = neurons.neuron_id(f, f.get(channel, "population", iw),
                                f.get(channel, "channel", iw), iw)
        for di, dest in enumerate(f.listing(channel, "destinations", iw)):
            dw = f"{iw}.destinations[{di}]"
            tags.address(*tags.destination(dest, dw), int(tag), gid, dw)


@dataclass(frozen=True)
class _Synapses:
    """Every CAM entry as a synapse: global target and source ids, kind code, weight."""

    target_id: np.ndarray
    source_id: np.ndarray
    kind: np.ndarray
    kinds: list[str]  # kind code -> projection kind
    weight: np.ndarray


_CAM = "chips[].cores[].neurons[].cam"


def _resolve_synapses(f: _Fields, board: _Board, neurons: _Neurons, cores: _Cores,
                      tags: _Tags) -> _Synapses:
    """Step 3: each CAM entry's sender through ``tags`` and its weight ``s_d * level(mask)``."""
    n_tags, n_base, cpc = board.tags, board.base_weights, board.cores_per_chip
    target_id = np.asarray(cores.cam_target, dtype=np.int64)
    core_of = np.asarray(cores.cam_core, dtype=np.int64)
    tag = np.asarray(cores.cam_tag, dtype=np.int64)
    mask = np.asarray(cores.cam_mask, dtype=np.int64)
    if tag.size and (tag.min() < 0 or tag.max() >= n_tags or mask.min() < 0
                     or mask.max() >= 1 << n_base):
        raise f.fail(_CAM, f"holds a tag outside 0..{n_tags - 1} or a weight mask outside "
                           f"0..{(1 << n_base) - 1}")
    source_id = tags.sender[core_of * n_tags + tag] if tag.size else np.zeros(0, np.int64)
    if np.any(source_id < 0):
        bad = int(np.flatnonzero(source_id < 0)[0])
        t_pop = int(neurons.population_of(target_id[bad]))
        raise f.fail(_CAM, f"of neuron {target_id[bad] - neurons.starts[t_pop]} of population "
                           f"{neurons.names[t_pop]} listens to tag {tag[bad]} on core "
                           f"({core_of[bad] // cpc}, {core_of[bad] % cpc}), which no SRAM entry "
                           "or input channel sends there")
    dendrite_kind = board.dendrite_kind
    unknown = sorted(set(cores.cam_dendrite) - set(dendrite_kind))
    if unknown:
        raise f.fail(_CAM, f"uses dendrite(s) {unknown} that carry no projection kind of the "
                           "target")
    kinds = sorted(set(dendrite_kind.values()))
    kind_code = {k: i for i, k in enumerate(kinds)}
    kind = np.asarray([kind_code[dendrite_kind[d]] for d in cores.cam_dendrite], dtype=np.int64)
    dendrite_code = board.dendrite_code
    dendrite = np.asarray([dendrite_code[d] for d in cores.cam_dendrite], dtype=np.int64)
    # quantize_graph's definition of a CAM entry's weight: s_d * level(mask)
    weight = (cores.scales[core_of, dendrite] * cores.levels[core_of, mask] if tag.size
              else np.zeros(0))
    return _Synapses(target_id, source_id, kind, kinds, weight)


def _projections(f: _Fields, g: Any, neurons: _Neurons, syn: _Synapses) -> list[Projection]:
    """Step 4: the graph's projections, each the synapses of its (source, target, kind), sparse,
    indices sorted by (target, source); every synapse must belong to one."""
    names, index_of, starts = neurons.names, neurons.index_of, neurons.starts
    kind_code = {k: i for i, k in enumerate(syn.kinds)}
    src_pop = neurons.population_of(syn.source_id)
    tgt_pop = neurons.population_of(syn.target_id)
    group = (src_pop * len(names) + tgt_pop) * len(syn.kinds) + syn.kind
    projections = []
    claimed = np.zeros(syn.kind.size, dtype=bool)
    for pi, p in enumerate(f.listing(g, "projections", "graph")):
        pw = f"graph.projections[{pi}]"
        s_name, t_name = f.get(p, "source", pw), f.get(p, "target", pw)
        k_name = f.get(p, "kind", pw)
        if s_name not in index_of or t_name not in index_of or k_name not in kind_code:
            raise f.fail(pw, f"joins unknown populations or kind ({s_name!r} -> {t_name!r}, "
                             f"{k_name!r})")
        code = ((index_of[s_name] * len(names) + index_of[t_name]) * len(syn.kinds)
                + kind_code[k_name])
        rows = np.flatnonzero(group == code)
        claimed[rows] = True
        local_t = syn.target_id[rows] - starts[index_of[t_name]]
        local_s = syn.source_id[rows] - starts[index_of[s_name]]
        order = np.lexsort((local_s, local_t))
        projections.append(Projection(
            str(f.get(p, "name", pw)), s_name, t_name, k_name, "sparse",
            np.ascontiguousarray(syn.weight[rows][order]),
            np.stack([local_t[order], local_s[order]], axis=1).astype(np.int64), {}))
    if not claimed.all():
        bad = int(np.flatnonzero(~claimed)[0])
        raise f.fail("graph.projections", f"has no projection of kind "
                                          f"{syn.kinds[syn.kind[bad]]!r} from "
                                          f"{names[src_pop[bad]]} to {names[tgt_pop[bad]]}, "
                                          "which the CAM entries hold")
    return projections


def _populations(f: _Fields, pop_docs: list[Any], neurons: _Neurons,
                 cores: _Cores) -> list[Population]:
    """Step 5: the populations with their params; ``bias`` the DC of each neuron's core and
    ``gain_e`` 1 for E populations (g_E is folded into the weights)."""
    populations = []
    for i, p in enumerate(pop_docs):
        where = f"graph.populations[{i}]"
        role = f.get(p, "role", where)
        lo, hi = int(neurons.starts[i]), int(neurons.starts[i + 1])
        arrays: dict[str, np.ndarray] = {}
        if role != "input":
            missing = np.flatnonzero(cores.neuron_core[lo:hi] < 0)
            if missing.size:
                raise f.fail("chips", f"places no core for neuron {int(missing[0])} of "
                                      f"population {neurons.names[i]} ({missing.size} missing)")
            arrays["bias"] = cores.neuron_dc[lo:hi].copy()
            if role == "exc":
                arrays["gain_e"] = np.ones(hi - lo)
        populations.append(Population(
            neurons.names[i], role, tuple(int(s) for s in f.listing(p, "shape", where)),
            str(p.get("layer", "")), dict(f.get(p, "params", where)), arrays))
    return populations


def config_to_graph(config: Mapping[str, Any], *, source: str = "<config>") -> EIGraph:
    """The quantized E-I graph a configuration holds, exactly as ``quantize_graph`` made it.

    Populations in graph order with their params; for each, ``bias`` the DC of the core holding
    each neuron (and ``gain_e`` 1 for E populations: g_E is folded into the weights); every
    projection sparse, indices sorted by (target, source), weights the core's base-weight subset
    sums selected by each CAM entry's mask times the core's scale of the entry's dendrite. A CAM
    tag is resolved to its sender through the SRAM entries and input channels that address that
    core with that tag. Steps: cores, tags, synapses, projections, populations.
    """
    f = _Fields(source)
    _check_header(config, source)
    board = _read_board(f, config)
    g = f.get(config, "graph", "")
    pop_docs = f.listing(g, "populations", "graph")
    neurons = _read_neurons(f, pop_docs)
    tags = _Tags(f, board)
    cores = _read_cores(f, config, board, neurons, tags)
    _read_input_channels(f, config, neurons, tags)
    synapses = _resolve_synapses(f, board, neurons, cores, tags)
    projections = _projections(f, g, neurons, synapses)
    populations = _populations(f, pop_docs, neurons, cores)
    graph = EIGraph(str(f.get(g, "name", "graph")), int(f.get(g, "T", "graph")), populations,
                    projections, dict(f.get(g, "input", "graph")),
                    dict(f.get(g, "readout", "graph")), dict(f.get(g, "division", "graph")),
                    dict(g.get("meta", {})))
    graph.validate()
    return graph


def exported_graph(out_dir: str | Path) -> EIGraph:
    """The network the chips hold: an export directory's ``dynapse2.json`` read back to its
    quantized graph (CAM weight masks over each core's base weights times the dendrite scales;
    exact, :func:`config_to_graph`). What ``IntegerSimulator(exported_graph(OUT))`` simulates.
    The directory's manifest is verified first (``eideploy.exportdir.verify_export``: every
    listed file present and unchanged), and the file checked against the shipped target."""
    verify_export(out_dir)
    path = Path(out_dir) / "dynapse2.json"
    return config_to_graph(read_config(path), source=printable(path))
