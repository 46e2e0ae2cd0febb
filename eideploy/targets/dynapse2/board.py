"""Running an export on a DYNAP-SE2 board through SynSense's samna (``eideploy run --device``).

The stages, each a plain function so that all but the last are tested without a board:

1. :func:`find_samna` / :func:`check_board`: is a usable samna installed? The samna on PyPI is a
   stub that installs packages when imported (spec/dynapse2.md §4), so it is recognised *without
   importing it*: ``importlib.util.find_spec`` (a top-level spec executes nothing), then the
   package directory is read: a compiled extension and no ``PYPI_SAMNA`` marker is the vendor's
   samna; anything else is refused with :class:`BoardUnavailable`, whose message says what to
   install from where and how to check the board.
2. :func:`config_to_samna_configuration`: ``dynapse2.json`` -> samna's ``Dynapse2Configuration``
   objects, built from whatever namespace provides the classes: the real ``samna.dynapse2`` on a
   board machine, rockpool's pure-Python mirrors (``rockpool.devices.dynapse.samna_alias``) in
   tests. It writes what ``samna_json.config_to_samna`` writes, object for object (the tests
   compare the JSON text), so ``samna.json`` is the exact record of what is applied.
3. :func:`encode_events`: the host's input spikes ``(T, B, n_in)`` -> time-stamped events, one
   per spike and destination (tag, hops, core mask); one model step is ``biases.DT_SECONDS`` and
   the FPGA clock ticks in microseconds; samples are separated by ``gap_steps`` silent steps so
   that the chip's state decays between them.
4. :func:`decode_counts`: output events (tag + timestamp) -> per-sample readout spike counts via
   ``readout_channels``, and predictions via ``readout_decision`` (ties: the earlier first spike,
   the chip's stand-in for the float readout's higher membrane).
5. :func:`run_on_board`: the samna calls of rockpool 3.1.0's ``DynapseSamna``
   (``rockpool/devices/dynapse/hardware/interface/samna.py``) and ``find_dynapse_boards``
   (``.../hardware/interface/utils.py``): ``samna.device.get_all_devices()``, ``open_device``,
   ``configure_opal_kelly(bitfile)``, ``get_model()``, ``get_configuration()`` /
   ``apply_configuration()``, ``clear_error_queue()``, ``grid_bus_write_events`` /
   ``input_interface_write_events(0, ...)``, ``read_events()``, ``close_device``. The current FPGA
   time is read, as rockpool does, by bouncing control events (tag 2047, hops -7/-7, which come
   back with ``x_hop`` -6) off the FPGA; every wait has a deadline and every blocking samna call
   runs under a timeout, so a silent board raises :class:`BoardError` instead of hanging.

Host coordinates follow rockpool's ``CHIP_POS``: the FPGA (chip -1) sits one hop in x before
chip 0, so an input event for a chip at board position ``(x, y)`` carries hops ``(x + 1, y)``.
A readout neuron reaches the host through its monitoring SRAM entry (all cores, hops -7/-7, its
readout tag, ``samna_json.MONITOR_SLOT``), and readout tags are unique among the host's tags, so
the tag alone names the class.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...graph.host import Host, readout_decision
from .biases import DT_SECONDS
from .samna import (
    _MASK_BITS,
    SamnaJsonError,
    _bits,
    _check_tag,
    default_parameters,
    neuron_entries,
)

__all__ = ["BoardError", "BoardUnavailable", "SamnaStatus", "find_samna", "check_board",
           "config_to_samna_configuration", "blank_configuration", "InputEvents",
           "encode_events", "Decoded", "decode_counts", "BoardResult", "run_on_board",
           "DT_US", "GAP_STEPS", "HOST_POSITION", "CONTROL_TAG", "CONTROL_HOP", "SAMNA_FIELDS",
           "BOARD_METHODS", "MODEL_METHODS", "BITFILE_ENV"]

#: One model step (``biases.DT_SECONDS``) in ticks of the FPGA's 1 us clock.
DT_US = int(round(DT_SECONDS * 1e6))
#: Silent steps between two samples: the chip has no reset, so its currents must decay (DynapSim's
#: default synapse tau is 10 ms: 50 ms leave under 1%).
GAP_STEPS = 50
#: The FPGA's position on the chip grid (rockpool's ``CHIP_POS[-1]``, one hop before chip 0).
HOST_POSITION = (-1, 0)
#: rockpool's control event: tag 2047 sent to hops (-7, -7) comes back from the FPGA with
#: ``x_hop`` -6; it marks "all events up to here are read" and gives the FPGA time.
CONTROL_TAG = 2047
CONTROL_HOP = -7
#: Environment variable naming the Stack board's FPGA bitfile when rockpool's is not installed.
BITFILE_ENV = "EIDEPLOY_DYNAPSE2_BITFILE"
#: The fields this module sets on samna's objects (the tests check them on rockpool's mirrors).
SAMNA_FIELDS = {
    "Dynapse2Configuration": ("chips",),
    "Dynapse2Chip": ("cores",),
    "Dynapse2Core": ("neurons", "parameters"),
    "Dynapse2Neuron": ("synapses", "destinations", "latch_so_dc"),
    "Dynapse2Synapse": ("dendrite", "stp", "weight", "precise_delay", "mismatched_delay", "tag"),
    "Dynapse2Destination": ("core", "x_hop", "y_hop", "tag"),
    "Dynapse2Parameter": ("coarse_value", "fine_value"),
    "NormalGridEvent": ("event", "timestamp"),
}
#: Methods called on an opened board (``Dynapse2Interface``) and on its model (``Dynapse2Model``).
BOARD_METHODS = ("configure_opal_kelly", "get_model", "grid_bus_write_events",
                 "input_interface_write_events", "read_events")
MODEL_METHODS = ("apply_configuration", "get_configuration", "clear_error_queue")

_LEAK_BIASES = ("SOIF_LEAK_N", "DEAM_ETAU_P", "DEGA_ITAU_P", "DENM_ETAU_P", "DESC_ITAU_P")
_EXTENSIONS = tuple(sorted({*importlib.machinery.EXTENSION_SUFFIXES, ".so", ".pyd"}))
_SCAN_LIMIT = 20000  # files looked at in a samna package before giving up (keeps find_samna fast)


# --------------------------------------------------------------------------- errors
class BoardError(RuntimeError):
    """The board was found but a step failed: a timeout, the FPGA, or samna itself."""


class BoardUnavailable(BoardError):
    """No usable samna or no DYNAP-SE2 board: the message says what is missing and what to do."""


_HOW_TO = """\
To run on the chip:
  1. Install SynSense's samna, the real package with its compiled libraries, as the vendor's
     documentation describes (SynSense's samna docs: install command, package index and the
     Python versions it supports). Do not 'pip install samna' from PyPI: the package there is
     a stub that tries to install other packages when it is imported (if it is installed,
     remove it first: 'pip uninstall samna').
  2. Check the board: the DYNAP-SE2 Stack board powered on and connected by USB to this
     machine ('lsusb' lists its FPGA module, by Opal Kelly); on Linux your user needs access to
     the USB device (the vendor's udev rules, then unplug and replug the board).
  3. Check samna sees it:
       python -c "import samna; print(samna.device.get_all_devices())"
     should list a device whose name contains DYNAP-SE2.
Without a board, 'eideploy simulate' runs the export in the bit-accurate integer simulator."""


def _unavailable(what: str) -> BoardUnavailable:
    return BoardUnavailable(f"DYNAP-SE2 board unavailable: {what}\n{_HOW_TO}")


# --------------------------------------------------------------------------- finding samna
@dataclass(frozen=True)
class SamnaStatus:
    """What ``import samna`` would load, found without importing it.

    ``kind``: ``absent`` (nothing), ``stub`` (PyPI's stub: the ``PYPI_SAMNA`` marker),
    ``incomplete`` (a samna without any compiled extension: not the vendor's) or ``real``.
    """

    kind: str
    path: str | None
    detail: str

    @property
    def usable(self) -> bool:
        return self.kind == "real"


def _has_extension(locations: Iterable[str]) -> str | None:
    seen = 0
    for location in locations:
        for root, _dirs, files in os.walk(location):
            for name in files:
                if name.endswith(_EXTENSIONS):
                    return os.path.join(root, name)
                seen += 1
                if seen > _SCAN_LIMIT:
                    return None
    return None


def find_samna() -> SamnaStatus:
    """Classify the samna on ``sys.path`` (module doc); never imports it."""
    try:
        spec = importlib.util.find_spec("samna")
    except (ImportError, ValueError) as exc:  # a broken entry, or sys.modules["samna"] odd
        return SamnaStatus("absent", None, f"samna cannot be located ({exc})")
    if spec is None:
        return SamnaStatus("absent", None, "no module named samna is installed")
    origin = spec.origin if spec.has_location else None
    locations = list(spec.submodule_search_locations or [])
    path = locations[0] if locations else origin
    if origin and origin.endswith(".py"):
        try:
            with open(origin, encoding="utf-8", errors="replace") as fh:
                if "PYPI_SAMNA" in fh.read():
                    return SamnaStatus("stub", path, f"the samna at {path} is PyPI's stub "
                                       "(marker PYPI_SAMNA, no compiled extension): it installs "
                                       "packages when imported, so eideploy never imports it")
        except OSError:
            pass
    if origin and origin.endswith(_EXTENSIONS):
        return SamnaStatus("real", origin, f"samna (compiled module {origin})")
    extension = _has_extension(locations)
    if extension is None:
        return SamnaStatus("incomplete", path, f"the samna at {path} has no compiled extension: "
                                               "it is not SynSense's samna")
    return SamnaStatus("real", path, f"samna at {path} (compiled: {os.path.basename(extension)})")


def check_board(*, board_index: int = 0, timeout_s: float = 20.0) -> None:
    """Raise :class:`BoardUnavailable` unless a real samna is installed and sees a DYNAP-SE2
    board (the ``board_index``-th). Without samna, or with PyPI's stub, this takes milliseconds
    and imports nothing."""
    status = find_samna()
    if not status.usable:
        raise _unavailable(status.detail)
    samna = _import_samna(timeout_s)
    _find_board(samna, board_index, timeout_s)


def _import_samna(timeout_s: float) -> Any:
    status = find_samna()  # checked again right before the import: never import the stub
    if not status.usable:
        raise _unavailable(status.detail)
    try:
        return _bounded("importing samna", timeout_s, importlib.import_module, "samna")
    except BoardError:
        raise
    except Exception as exc:
        raise _unavailable(f"samna ({status.path}) is installed but does not import: "
                           f"{type(exc).__name__}: {exc}") from exc


def _find_board(samna: Any, board_index: int, timeout_s: float) -> Any:
    """rockpool's ``find_dynapse_boards``: the devices whose type name holds DYNAP-SE2."""
    lister = getattr(samna.device, "get_all_devices", None) or samna.device.get_unopened_devices
    devices = list(_bounded("listing samna devices", timeout_s, lister) or [])
    boards = [d for d in devices if "DYNAP-SE2" in str(getattr(d, "device_type_name", "")).upper()]
    if not boards:
        names = ", ".join(str(getattr(d, "device_type_name", d)) for d in devices) or "none"
        raise _unavailable(f"samna is installed but finds no DYNAP-SE2 board (devices: {names})")
    if not 0 <= board_index < len(boards):
        raise _unavailable(f"board index {board_index} asked for, but samna finds "
                           f"{len(boards)} DYNAP-SE2 board(s)")
    return boards[board_index]


def _bounded(what: str, timeout_s: float, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with a deadline: a samna call that blocks raises :class:`BoardError`
    (the call is left in a daemon thread; the board then needs a replug)."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=call, name=f"eideploy-board: {what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise BoardError(f"the board did not answer within {timeout_s:g} s while {what}; "
                         "unplug and replug it (USB and power) and try again")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# --------------------------------------------------------------------------- configuration
def _new(cls: Any, **fields: Any) -> Any:
    """A samna object with ``fields`` set: samna's classes are built empty and then assigned (as
    rockpool's allocator does); rockpool's mirrors are dataclasses that take the fields."""
    try:
        obj = cls()
    except TypeError:
        return cls(**fields)
    for name, value in fields.items():
        setattr(obj, name, value)
    return obj


class _Layout:
    """The board's fixed sizes from the configuration's target, and object factories."""

    def __init__(self, config: Mapping[str, Any], sm: Any) -> None:
        target = config["target"]
        self.sm = sm
        self.chips = int(target["chips_per_board"])
        self.cores_per_chip = int(target["cores_per_chip"])
        self.neurons_per_core = int(target["neurons_per_core"])
        self.cam_entries = int(target["cam_entries_per_neuron"])
        self.sram_entries = int(target["sram_entries_per_neuron"])
        self.tags = int(target["tags"])
        if self.cores_per_chip > _MASK_BITS or int(target["base_weights_per_core"]) != _MASK_BITS:
            raise SamnaJsonError(f"target {target.get('name')!r}: samna's core and weight masks "
                                 f"hold {_MASK_BITS} bits")
        self.dendrite_code = {str(k): int(v) for k, v in dict(target["dendrites"]).items()}
        self.empty_synapse = self.synapse("none", 0, False, 0, 0, "cam")
        self.empty_destination = self.destination(0, 0, 0, 0, "sram")

    def check_tag(self, tag: Any, where: str) -> int:
        return _check_tag(tag, self.tags, where)

    def synapse(self, dendrite: str, mask: Any, stp: bool, delay: Any, tag: int,
                where: str) -> Any:
        if dendrite not in self.dendrite_code:
            raise SamnaJsonError(f"field '{where}.dendrite' is {dendrite!r}, not a dendrite of "
                                 f"the target ({', '.join(self.dendrite_code)})")
        if not isinstance(delay, int) or not 0 <= delay < 4:
            raise SamnaJsonError(f"field '{where}.delay' must be a delay class 0..3, got "
                                 f"{delay!r}")
        sm = self.sm
        return _new(sm.Dynapse2Synapse, dendrite=sm.Dendrite(self.dendrite_code[dendrite]),
                    stp=bool(stp), weight=_bits(mask, f"{where}.weight_mask"),
                    precise_delay=bool(delay & 1), mismatched_delay=bool(delay >> 1 & 1),
                    tag=tag)

    def destination(self, core_mask: Any, x_hop: int, y_hop: int, tag: int, where: str) -> Any:
        if not (isinstance(x_hop, int) and isinstance(y_hop, int)
                and abs(x_hop) <= 7 and abs(y_hop) <= 7):
            raise SamnaJsonError(f"field '{where}': hops ({x_hop}, {y_hop}) beyond +-7")
        return _new(self.sm.Dynapse2Destination, core=_bits(core_mask, f"{where}.core_mask"),
                    x_hop=x_hop, y_hop=y_hop, tag=tag)


def _parameter_codes(codes: Mapping[str, Any], where: str) -> dict[str, tuple[int, int]]:
    """rockpool's DynapSim defaults overridden by a core's ``bias_codes`` (as samna_json)."""
    merged = {name: (coarse, fine) for name, coarse, fine in default_parameters()}
    for name, code in codes.items():
        try:
            merged[name] = (int(code["coarse"]), int(code["fine"]))
        except (KeyError, TypeError, ValueError):
            raise SamnaJsonError(f"field '{where}.bias_codes.{name}' needs integer 'coarse' and "
                                 "'fine'") from None
    for name, (coarse, fine) in merged.items():
        if name[-1] not in ("N", "P") or not (0 <= coarse <= 5 and 0 <= fine <= 255):
            raise SamnaJsonError(f"field '{where}.bias_codes.{name}': ({coarse}, {fine}) is not "
                                 "an N/P parameter code (coarse 0..5, fine 0..255)")
    return dict(sorted(merged.items()))


def _mirror_parameter(sm: Any, name: str, coarse: int, fine: int) -> Any:
    kind = name[-1]
    return sm.Dynapse2Parameter(type=kind, coarse_value=coarse, fine_value=fine,
                                _initial_type=sm.ParameterType.n if kind == "N"
                                else sm.ParameterType.p)


def _set_parameters(sm: Any, core: Any, codes: Mapping[str, tuple[int, int]],
                    where: str) -> None:
    params = core.parameters
    for name, (coarse, fine) in codes.items():
        try:
            param = params[name]
        except KeyError:
            if not isinstance(params, dict):
                raise SamnaJsonError(f"{where}: samna's core has no parameter {name}") from None
            params[name] = _mirror_parameter(sm, name, coarse, fine)
            continue
        param.coarse_value = coarse
        param.fine_value = fine
    if isinstance(params, dict):  # rockpool's mirror: a plain dict, written in name order
        core.parameters = dict(sorted(params.items()))


def blank_configuration(samna_module: Any, config: Mapping[str, Any]) -> Any:
    """An empty ``Dynapse2Configuration`` for the configuration's board: samna's default object,
    or, from rockpool's mirrors (which have no defaults), every chip, core and neuron empty with
    samna's neutral chip-level settings (those ``samna.json`` writes)."""
    try:
        return samna_module.Dynapse2Configuration()
    except TypeError:
        pass
    from .samna import _all_false, _empty_chip

    sm = samna_module
    layout = _Layout(config, sm)
    latches = {f.name: False for f in dataclasses.fields(sm.Dynapse2Neuron)
               if f.name.startswith("latch_")}
    defaults = _parameter_codes({}, "cores")
    chips = []
    for _chip in range(layout.chips):
        cores = []
        for core_id in range(layout.cores_per_chip):
            neurons = [sm.Dynapse2Neuron(
                synapses=[layout.empty_synapse] * layout.cam_entries,
                destinations=[layout.empty_destination] * layout.sram_entries, **latches)
                for _ in range(layout.neurons_per_core)]
            cores.append(sm.Dynapse2Core(
                neurons=neurons, neuron_monitoring_on=False, monitored_neuron=0,
                parameters={n: _mirror_parameter(sm, n, c, f) for n, (c, f) in defaults.items()},
                sadc_enables=_all_false(sm.Dynapse2Core_CoreSadcEnables),
                enable_syaw_stdbuf_an=False, enable_pulse_extender_monitor1=False,
                enable_pulse_extender_monitor2=False, _id=core_id, _cookie=0))
        chip = _empty_chip(sm)
        chip.cores = cores
        chips.append(chip)
    return sm.Dynapse2Configuration(chips=chips)


def config_to_samna_configuration(config: Mapping[str, Any], samna_module: Any, *,
                                  base: Any = None) -> Any:
    """samna's ``Dynapse2Configuration`` of a ``dynapse2.json`` document (module doc).

    ``samna_module`` provides the classes (``samna.dynapse2``, or rockpool's ``samna_alias``);
    ``base`` is the configuration object to write into (on a board, the model's current one),
    by default :func:`blank_configuration`. Every neuron of every core of the board is written
    (unused ones empty, so nothing of an earlier network stays), every core's parameters set to
    rockpool's DynapSim defaults overridden by the core's ``bias_codes``: the same content, entry
    for entry, as ``samna.json``. Raises ``SamnaJsonError`` naming the field that samna's objects
    cannot hold.
    """
    sm = samna_module
    layout = _Layout(config, sm)
    configuration = base if base is not None else blank_configuration(sm, config)
    used: dict[tuple[int, int], tuple[Mapping[str, Any], str]] = {}
    for ci, chip in enumerate(config["chips"]):
        for ki, core in enumerate(chip["cores"]):
            key = (int(chip["id"]), int(core["id"]))
            if not (0 <= key[0] < layout.chips and 0 <= key[1] < layout.cores_per_chip):
                raise SamnaJsonError(f"field 'chips[{ci}].cores[{ki}]' is core {key}, outside "
                                     f"the board's {layout.chips} x {layout.cores_per_chip} "
                                     "cores")
            used[key] = (core, f"chips[{ci}].cores[{ki}]")
    readout_tag = {(int(r["chip"]), int(r["core"]), int(r["neuron"])): r["tag"]
                   for r in config.get("readout_channels", [])}
    chips = configuration.chips
    if len(chips) < layout.chips:
        raise SamnaJsonError(f"the samna configuration holds {len(chips)} chip(s); the export is "
                             f"for a board of {layout.chips}")
    empty_synapses = [layout.empty_synapse] * layout.cam_entries
    empty_destinations = [layout.empty_destination] * layout.sram_entries
    for chip_id in range(layout.chips):
        chip_obj = chips[chip_id]
        for core_id in range(layout.cores_per_chip):
            core_obj = chip_obj.cores[core_id]
            content: dict[int, tuple[list[Any], list[Any]]] = {}
            core, where = used.get((chip_id, core_id), ({}, f"core ({chip_id}, {core_id})"))
            dc = float(core.get("dc", 0.0)) > 0
            for ni, neuron in enumerate(core.get("neurons", [])):
                nw = f"{where}.neurons[{ni}]"
                slot = neuron["id"]
                if not isinstance(slot, int) or not 0 <= slot < layout.neurons_per_core:
                    raise SamnaJsonError(f"field '{nw}.id' is {slot!r}, outside 0.."
                                         f"{layout.neurons_per_core - 1}")
                content[slot] = neuron_entries(layout, neuron,
                                                readout_tag.get((chip_id, core_id, slot)), nw)
            neurons = core_obj.neurons
            for slot in range(layout.neurons_per_core):
                neuron_obj = neurons[slot]
                synapses, destinations = content.get(slot, (empty_synapses, empty_destinations))
                neuron_obj.synapses = list(synapses)
                neuron_obj.destinations = list(destinations)
                neuron_obj.latch_so_dc = dc and slot in content
            _set_parameters(sm, core_obj, _parameter_codes(core.get("bias_codes", {}), where),
                            where)
    return configuration


# --------------------------------------------------------------------------- events
@dataclass(frozen=True)
class InputEvents:
    """Host -> chip events, one row per (spike, destination chip), in time order.

    ``timestamp_us`` strictly increases: the events of one step are spaced 1 us apart from the
    step's start (rockpool's ``__raster_to_aer``). Sample ``b`` starts at
    ``sample_start_us[b]``; samples follow each other every ``period_us`` =
    ``(steps + gap_steps) * dt_us``.
    """

    timestamp_us: np.ndarray
    tag: np.ndarray
    chip: np.ndarray
    core_mask: np.ndarray
    x_hop: np.ndarray
    y_hop: np.ndarray
    sample: np.ndarray
    sample_start_us: np.ndarray
    steps: int
    dt_us: int
    period_us: int

    def __len__(self) -> int:
        return int(self.timestamp_us.size)

    @property
    def end_us(self) -> int:
        """The end of the last sample's period (its gap included)."""
        return int(self.sample_start_us[-1]) + self.period_us if self.sample_start_us.size else 0

    def core_bits(self, index: int) -> list[bool]:
        return [bool(int(self.core_mask[index]) >> k & 1) for k in range(_MASK_BITS)]


def _chip_position(config: Mapping[str, Any], chip: int) -> tuple[int, int]:
    for c in config["chips"]:
        if int(c["id"]) == chip:
            x, y = c["position"]
            return int(x), int(y)
    raise ValueError(f"input channels send to chip {chip}, which dynapse2.json does not place")


def _input_routes(config: Mapping[str, Any], n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Per input channel, its events' (tag, chip, core_mask, x_hop, y_hop) rows: ``offsets``
    (n_in + 1,) into ``rows`` (R, 5)."""
    population = config["graph"]["input"]["population"]
    routes: list[list[tuple[int, int, int, int, int]]] = [[] for _ in range(n_in)]
    for channel in config["input_channels"]:
        if channel["population"] != population or channel.get("tag") is None:
            continue  # a channel that feeds nothing has no tag
        c = int(channel["channel"])
        if not 0 <= c < n_in:
            raise ValueError(f"input channel {c} is outside the {n_in} inputs of {population}")
        for dest in channel["destinations"]:
            chip = int(dest["chip"])
            x, y = _chip_position(config, chip)
            x_hop, y_hop = x - HOST_POSITION[0], y - HOST_POSITION[1]
            if abs(x_hop) > 7 or abs(y_hop) > 7:
                raise ValueError(f"chip {chip} is ({x_hop}, {y_hop}) hops from the host, beyond "
                                 "+-7")
            routes[c].append((int(channel["tag"]), chip, int(dest["core_mask"]), x_hop, y_hop))
    offsets = np.zeros(n_in + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in routes])
    rows = np.array([row for r in routes for row in r], dtype=np.int64).reshape(-1, 5)
    return offsets, rows


def encode_events(config: Mapping[str, Any], spikes_in: np.ndarray, dt_us: int = DT_US, *,
                  gap_steps: int = GAP_STEPS, start_us: int = 0) -> InputEvents:
    """The events the host sends for input spikes ``(T, B, n_in)`` (or ``(T, B, *in_shape)``),
    as ``graph.host.Host(graph).spikes`` gives them (a count per step: that many events).

    Model step ``t`` of sample ``b`` starts at ``start_us + b * period_us + t * dt_us``; every
    spike goes to each destination chip of its channel (``input_channels``: tag, core mask; hops
    from the host, module doc). Raises ``ValueError`` for a shape that does not match the
    configuration's input, negative or fractional counts, or more events in one step than
    ``dt_us`` microseconds can space.
    """
    spikes = np.asarray(spikes_in)
    if spikes.ndim < 3:
        raise ValueError(f"input spikes must be (T, B, n_in), got shape {spikes.shape}")
    steps, batch = spikes.shape[:2]
    spikes = spikes.reshape(steps, batch, -1)
    population = config["graph"]["input"]["population"]
    shape = next(p["shape"] for p in config["graph"]["populations"] if p["name"] == population)
    n_in = int(math.prod(int(s) for s in shape))
    if spikes.shape[2] != n_in:
        raise ValueError(f"input spikes have {spikes.shape[2]} channels, the configuration's "
                         f"input {population} has {n_in}")
    if dt_us < 1 or gap_steps < 0:
        raise ValueError(f"dt_us must be >= 1 and gap_steps >= 0, got {dt_us}, {gap_steps}")
    counts = np.rint(spikes).astype(np.int64)
    if np.any(counts < 0) or not np.allclose(counts, spikes):
        raise ValueError("input spikes must be non-negative integer counts per step")
    offsets, rows = _input_routes(config, n_in)
    period_us = (steps + gap_steps) * dt_us
    # sample-major, then step, then channel, then destination
    per_channel = np.diff(offsets)
    events_per_cell = np.ascontiguousarray(counts.transpose(1, 0, 2)) * per_channel  # (B, T, n)
    flat = events_per_cell.reshape(-1)
    cells = np.flatnonzero(flat)
    cell_of_event = np.repeat(cells, flat[cells])
    b, rest = np.divmod(cell_of_event, steps * n_in)
    t, c = np.divmod(rest, n_in)
    # k-th event of its cell -> the cell's spike k // routes, route k % routes
    first = np.concatenate(([0], np.cumsum(flat[cells])[:-1])) if cells.size else cells
    k = np.arange(cell_of_event.size) - np.repeat(first, flat[cells])
    row = offsets[c] + k % np.maximum(per_channel[c], 1)
    # rank of each event within its step (events sorted by (b, t) already)
    step_key = b * steps + t
    step_first = np.searchsorted(step_key, step_key, side="left")
    rank = np.arange(step_key.size) - step_first
    if rank.size and int(rank.max()) >= dt_us:
        raise ValueError(f"{int(rank.max()) + 1} events in one step: more than {dt_us} us of "
                         "1-us-spaced events; use a longer dt_us")
    sample_start = start_us + np.arange(batch, dtype=np.int64) * period_us
    timestamps = sample_start[b] + t * dt_us + rank
    return InputEvents(timestamps.astype(np.int64), rows[row, 0], rows[row, 1], rows[row, 2],
                       rows[row, 3], rows[row, 4], b.astype(np.int64), sample_start,
                       int(steps), int(dt_us), int(period_us))


@dataclass(frozen=True)
class Decoded:
    """Readout spike ``counts`` (B, classes), ``predictions`` (B,), the ``first_spike_us``
    of each class relative to its sample's start (inf: none) and the number of ``ignored``
    events (a tag that is no readout's, or a time outside every sample's window)."""

    counts: np.ndarray
    predictions: np.ndarray
    first_spike_us: np.ndarray
    ignored: int


def _tag_and_time(event: Any) -> tuple[int, int]:
    """A samna ``NormalGridEvent`` (``event.event.tag``) or a plain record (``event.tag``)."""
    inner = getattr(event, "event", None)
    tag = inner.tag if inner is not None and hasattr(inner, "tag") else event.tag
    return int(tag), int(event.timestamp)


def decode_counts(config: Mapping[str, Any], events: Iterable[Any], sent: InputEvents, *,
                  window_us: int | None = None) -> Decoded:
    """Per-sample readout counts of output ``events`` (each with ``tag`` and ``timestamp`` in
    us, or samna's ``event.tag``): an event of a readout tag counts for the sample whose window
    ``[start, start + window_us)`` holds it (by default the whole period, gap included: a spike
    driven by the last step may leave a little late). Predictions: most spikes, ties to the
    class whose first spike came earliest (``readout_decision``)."""
    readouts = sorted(config["readout_channels"], key=lambda r: int(r["class"]))
    classes = len(readouts)
    class_of = {int(r["tag"]): int(r["class"]) for r in readouts}
    starts = sent.sample_start_us
    batch = starts.size
    window = sent.period_us if window_us is None else int(window_us)
    counts = np.zeros((batch, classes), dtype=np.int64)
    first = np.full((batch, classes), np.inf)
    ignored = 0
    for event in events:
        tag, stamp = _tag_and_time(event)
        k = class_of.get(tag)
        b = int(np.searchsorted(starts, stamp, side="right")) - 1
        if k is None or b < 0 or stamp - int(starts[b]) >= window:
            ignored += 1
            continue
        counts[b, k] += 1
        first[b, k] = min(first[b, k], stamp - int(starts[b]))
    predictions = readout_decision(counts, -first) if batch else np.zeros(0, dtype=np.int64)
    return Decoded(counts, predictions.astype(np.int64), first, ignored)


# --------------------------------------------------------------------------- the board
@dataclass
class BoardResult:
    """One run on the board: ``accuracy`` in percent (as ``graph.execute.accuracy``), the
    ``predictions`` and readout ``counts`` per sample, mean ``rates`` in Hz per population the
    host observes (the input it sends, over the stimulus; the readout, over the counting
    window), the events sent and received and the wall-clock ``seconds``."""

    accuracy: float
    predictions: np.ndarray
    counts: np.ndarray
    rates: dict[str, float]
    events_sent: int
    events_received: int
    seconds: float
    device: str = ""
    ignored_events: int = 0
    notes: list[str] = field(default_factory=list)


def _bitfile() -> str:
    path = os.environ.get(BITFILE_ENV)
    if not path:
        try:
            from rockpool.devices.dynapse.lookup import SE2_STACK_FPGA_FILEPATH as path
        except ImportError:
            path = ""
    if not path or not os.path.isfile(path):
        raise _unavailable(f"the Stack board's FPGA bitfile (Dynapse2Stack.bit) is not found "
                           f"({path or 'rockpool does not ship it'}); set {BITFILE_ENV} to the "
                           "bitfile from SynSense")
    return path


class _Session:
    """An opened board, driven as rockpool's ``DynapseSamna`` drives it."""

    def __init__(self, samna: Any, device: Any, timeout_s: float, poll_s: float) -> None:
        self.samna, self.sm = samna, samna.dynapse2
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self.board = _bounded("opening the board", timeout_s, samna.device.open_device, device)
        if self.board is None:
            raise _unavailable("samna could not open the DYNAP-SE2 board (is another process "
                               "using it?)")
        try:
            if hasattr(self.board, "configure_opal_kelly"):
                if not _bounded("configuring the FPGA", timeout_s,
                                self.board.configure_opal_kelly, _bitfile()):
                    raise BoardError("samna could not configure the board's FPGA (Opal Kelly)")
            self.model = self.board.get_model()
        except BaseException:
            try:
                self.close()
            except Exception:  # the first error is the one to report
                pass
            raise

    def apply(self, configuration: Any) -> None:
        self.model.clear_error_queue()
        _bounded("applying the configuration", self.timeout_s, self.model.apply_configuration,
                 configuration)

    def event(self, core: list[bool], x_hop: int, y_hop: int, tag: int, timestamp: int) -> Any:
        dest = _new(self.sm.Dynapse2Destination, core=core, x_hop=x_hop, y_hop=y_hop, tag=tag)
        return _new(self.sm.NormalGridEvent, event=dest, timestamp=int(timestamp))

    def control(self, timestamp: int, n: int = 3) -> list[Any]:
        # several, because one can get lost (rockpool's __control_sequence)
        return [self.event([True] * _MASK_BITS, CONTROL_HOP, CONTROL_HOP, CONTROL_TAG, timestamp)
                for _ in range(n)]

    @staticmethod
    def is_control(event: Any) -> bool:
        inner = getattr(event, "event", event)
        return (int(inner.tag) == CONTROL_TAG and int(inner.x_hop) == CONTROL_HOP + 1
                and int(inner.y_hop) == CONTROL_HOP)

    def poll(self, seconds: float) -> tuple[list[Any], int | None]:
        """Events read until a control event comes back (then its timestamp) or ``seconds``."""
        out: list[Any] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            buffer = self.board.read_events()
            done = None
            for event in buffer or []:
                if self.is_control(event):
                    done = int(event.timestamp)
                else:
                    out.append(event)
            if done is not None:
                return out, done
            time.sleep(self.poll_s)
        return out, None

    def now_us(self) -> int:
        self.board.input_interface_write_events(0, self.control(0))
        _, done = self.poll(self.timeout_s)
        if done is None:
            raise BoardError(f"the FPGA did not bounce a control event within "
                             f"{self.timeout_s:g} s; unplug and replug the board")
        return done

    def run(self, sent: InputEvents, deadline_s: float) -> list[Any]:
        events = [self.event(sent.core_bits(i), int(sent.x_hop[i]), int(sent.y_hop[i]),
                             int(sent.tag[i]), int(sent.timestamp_us[i]))
                  for i in range(len(sent))]
        events += self.control(sent.end_us)
        _bounded("writing events", self.timeout_s, self.board.grid_bus_write_events, events)
        out, done = self.poll(deadline_s)
        if done is None:
            raise BoardError(f"the board's output did not end within {deadline_s:g} s (the "
                             "control event written after the last sample never came back)")
        return out

    def discharge(self, config: Mapping[str, Any]) -> None:
        """rockpool's leaky configuration: every leak at its maximum empties the capacitors."""
        leaky = blank_configuration(self.sm, config)
        for chip in leaky.chips:
            for core in chip.cores:
                for name in _LEAK_BIASES:
                    try:
                        core.parameters[name].coarse_value = 5
                        core.parameters[name].fine_value = 255
                    except KeyError:
                        continue
        self.apply(leaky)

    def close(self) -> None:
        _bounded("closing the board", self.timeout_s, self.samna.device.close_device, self.board)


def run_on_board(out_dir: Path, x: np.ndarray, y: np.ndarray, *, board_index: int = 0,
                 progress: bool = True, chunk: int = 32, gap_steps: int = GAP_STEPS,
                 offset_us: int = 100_000, timeout_s: float = 20.0,
                 poll_s: float = 1e-3) -> BoardResult:
    """Run the export in ``out_dir`` on a DYNAP-SE2 board on inputs ``x`` (``(B, *in_shape)``
    or ``(B, T, *in_shape)``, as the float executor takes) with labels ``y``.

    The configuration is applied once; the samples are streamed ``chunk`` at a time, each chunk
    starting ``offset_us`` after the FPGA's current time, with ``gap_steps`` silent steps between
    samples. Raises :class:`BoardUnavailable` (no real samna, no board, no bitfile) before
    touching any data, :class:`BoardError` when the board stops answering (every wait has a
    deadline: ``timeout_s`` for each samna call, the chunk's duration plus ``timeout_s`` for its
    output), ``ConfigError`` for a bad ``dynapse2.json``.
    """
    status = find_samna()
    if not status.usable:
        raise _unavailable(status.detail)
    from .config import config_to_graph, read_config  # the compiler stack: only when used

    started = time.perf_counter()
    out_dir = Path(out_dir)
    config = read_config(out_dir / "dynapse2.json")
    graph = config_to_graph(config, source=str(out_dir / "dynapse2.json"))
    host = Host(graph)
    x = np.asarray(x)
    in_shape = tuple(host.input.shape)
    if x.ndim == 2 and x.shape[1] == host.input.size and len(in_shape) > 1:
        x = x.reshape(len(x), *in_shape)  # flat samples, as some loaders give them
    labels = np.asarray(y).reshape(-1)
    if len(labels) != len(x) or len(labels) == 0:
        raise ValueError(f"run_on_board: {len(x)} inputs and {len(labels)} labels")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")

    samna = _import_samna(timeout_s)
    device = _find_board(samna, board_index, timeout_s)
    session = _Session(samna, device, timeout_s, poll_s)
    notes: list[str] = []
    counts, predictions = [], []
    sent_total = received_total = ignored_total = 0
    input_spikes = 0
    try:
        base = _bounded("reading the configuration", timeout_s,
                        session.model.get_configuration)
        session.apply(config_to_samna_configuration(config, session.sm, base=base))
        for lo in range(0, len(labels), chunk):
            spikes = host.spikes(x[lo:lo + chunk])
            spikes = np.broadcast_to(spikes, (graph.T, *spikes.shape[1:]))
            input_spikes += int(np.rint(spikes).sum())
            start = session.now_us() + offset_us
            sent = encode_events(config, spikes, DT_US, gap_steps=gap_steps, start_us=start)
            duration_s = (sent.end_us - start + offset_us) * 1e-6
            received = session.run(sent, duration_s + timeout_s)
            decoded = decode_counts(config, received, sent)
            counts.append(decoded.counts)
            predictions.append(decoded.predictions)
            sent_total += len(sent)
            received_total += len(received)
            ignored_total += decoded.ignored
            if progress:
                done = min(lo + chunk, len(labels))
                print(f"board: {done}/{len(labels)} samples, {sent_total} events sent, "
                      f"{received_total} received", file=sys.stderr, flush=True)
    finally:
        try:
            session.discharge(config)
        except Exception as exc:  # the result (or the first error) matters more
            notes.append(f"discharging the board failed: {exc}")
        try:
            session.close()
        except Exception as exc:
            notes.append(f"closing the board failed: {exc}")
    all_counts = np.concatenate(counts)
    all_predictions = np.concatenate(predictions)
    accuracy = 100.0 * float(np.mean(all_predictions == labels))
    readout = str(graph.readout["population"])
    n_samples, classes = all_counts.shape
    period_s = (graph.T + gap_steps) * DT_SECONDS
    rates = {readout: float(all_counts.sum()) / (n_samples * classes * period_s),
             host.input.name: input_spikes / (n_samples * host.input.size * graph.T * DT_SECONDS)}
    if ignored_total:
        notes.append(f"{ignored_total} output event(s) had no readout tag or fell outside every "
                     "sample's window")
    return BoardResult(accuracy, all_predictions, all_counts, rates, sent_total, received_total,
                       time.perf_counter() - started,
                       str(getattr(device, "device_type_name", "DYNAP-SE2")), ignored_total,
                       notes)
