"""``samna.json``: an eideploy DYNAP-SE2 configuration in samna's own JSON form.

samna serialises its ``Dynapse2Configuration`` with cereal: a ``{"value0": {...}}`` wrapper,
camelCase field names, fixed-size arrays written as ``{"value0": ..., "value1": ...}`` objects,
enums as their integer values and parameter maps as ``[{"key": NAME, "value": {...}}]`` lists.
rockpool's pure-Python mirrors of those classes (``rockpool.devices.dynapse.samna_alias``) write
exactly that form without samna, and they are what this module builds on: every object's field
names, their order and their encoding come from rockpool's ``json_wrapper()``, never from a name
spelled here. samna itself is never imported (spec/dynapse2.md §4).

What goes where (``dynapse2.json`` -> samna):

* **board**: one ``Dynapse2Chip`` per chip of the target board (``--chips N`` gives N), each with
  all its cores, each core with all its neurons, each neuron with all its CAM and SRAM entries:
  samna's arrays have fixed sizes, so unused cores, neurons and entries are written empty (the
  same empty objects rockpool writes).
* **CAM** -> ``Dynapse2Synapse``: ``tag``, ``dendrite`` (samna's ``Dendrite`` enum: ampa 1024,
  gaba 512, shunt 128), ``weight`` (the 4-bit base-weight mask as 4 booleans, bit k =
  ``SYAM_Wk``), ``stp`` and the delay class as two flags (``preciseDelay`` = bit 0,
  ``mismatchedDelay`` = bit 1). Unused entries: dendrite ``none``, tag 0, mask 0.
* **SRAM** -> ``Dynapse2Destination``: ``core`` (the core mask as 4 booleans, bit k = core k of
  the destination chip), ``xHop``, ``yHop``, ``tag``. An entry is in use when its core mask is not
  empty (rockpool's and samna's convention; the mirror has no separate in-use flag). Entry 0 is the
  reserved monitoring entry (rockpool's allocator puts it first): a readout neuron's spikes reach
  the host through it (all cores, hops (-7, -7), the readout tag of ``readout_channels``, which is
  unique among the host's tags); for every other neuron it is left empty, free to be set for
  monitoring. The network's destinations follow in entries 1..3.
* **per-core parameters** -> ``Dynapse2Parameter`` by name (``type`` N or P from the name,
  ``coarseValue``, ``fineValue``): rockpool's DynapSim defaults
  (``DynapSimCore().export_Dynapse2Parameters()``: tau_mem 20 ms, tau_syn 10 ms, t_ref 1 ms ...)
  for the parameters eideploy does not compute, overridden by the codes of ``dynapse2.json``
  (leak, threshold, DC, the four base weights). Neurons of a core with a positive DC get
  ``latchSoDc``.
* chip-level, shared (cores 0/1, 2/3), sADC, DVS and bio-amplifier settings are left empty, as
  samna's own defaults.

The translation is a pure function of the configuration document (:func:`config_to_samna`);
:func:`samna_json` gives its deterministic text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from .rockpool_shim import rockpool_import

__all__ = ["config_to_samna", "samna_json", "SamnaJsonError", "MONITOR_SLOT", "MONITOR_HOPS"]

#: The SRAM entry kept for monitoring a neuron from the host (rockpool's allocator: the first).
MONITOR_SLOT = 0
#: Hops of an event bound for the host (rockpool's ``get_monitor_destination``).
MONITOR_HOPS = (-7, -7)
#: samna's objects have four bits in every mask: weight masks and core masks.
_MASK_BITS = 4


class SamnaJsonError(ValueError):
    """A configuration that samna's objects cannot hold (the message names the field)."""


# --------------------------------------------------------------------------- rockpool, lazily
@functools.lru_cache(maxsize=1)
def _alias() -> Any:
    """rockpool's samna mirror module."""
    try:
        with rockpool_import():
            from rockpool.devices.dynapse import samna_alias
    except ImportError as exc:
        raise ImportError("samna.json is written through rockpool's samna mirrors: "
                          "pip install rockpool==3.1.0") from exc
    return samna_alias


@functools.lru_cache(maxsize=1)
def default_parameters() -> tuple[tuple[str, int, int], ...]:
    """rockpool's DynapSim default (coarse, fine) per core parameter, sorted by name."""
    try:
        with rockpool_import():
            from rockpool.devices.dynapse.parameters import DynapSimCore
    except ImportError as exc:  # pragma: no cover - rockpool is present when _alias() worked
        raise ImportError("samna.json needs rockpool's DynapSim defaults: "
                          "pip install rockpool==3.1.0") from exc
    codes = DynapSimCore().export_Dynapse2Parameters()
    return tuple(sorted((str(name), int(c), int(f)) for name, (c, f) in codes.items()))


# --------------------------------------------------------------------------- templates
def _bits(value: int, where: str) -> list[bool]:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << _MASK_BITS:
        raise SamnaJsonError(f"field '{where}' must be a {_MASK_BITS}-bit mask (0..15), got "
                             f"{value!r}")
    return [bool(value >> k & 1) for k in range(_MASK_BITS)]


def _check_tag(tag: Any, tags: int, where: str) -> int:
    if not isinstance(tag, int) or isinstance(tag, bool) or not 0 <= tag < tags:
        raise SamnaJsonError(f"field '{where}.tag' must be an integer in 0..{tags - 1}, "
                             f"got {tag!r}")
    return tag


class _Builder:
    """JSON fragments made by rockpool's classes, cached per distinct content: a board holds up
    to 262144 CAM entries but only a few hundred distinct (dendrite, mask, flags) combinations,
    and the tag is the only field that varies between them."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.sa = _alias()
        target = config["target"]
        self.tags = int(target["tags"])
        self.cam_entries = int(target["cam_entries_per_neuron"])
        self.sram_entries = int(target["sram_entries_per_neuron"])
        self.neurons_per_core = int(target["neurons_per_core"])
        self.cores_per_chip = int(target["cores_per_chip"])
        self.chips = int(target["chips_per_board"])
        if self.cores_per_chip > _MASK_BITS:
            raise SamnaJsonError(f"target {target.get('name')!r} has {self.cores_per_chip} cores "
                                 f"per chip; samna's core masks hold {_MASK_BITS}")
        if int(target["base_weights_per_core"]) != _MASK_BITS:
            raise SamnaJsonError(f"target {target.get('name')!r} has "
                                 f"{target['base_weights_per_core']} base weights per core; "
                                 f"samna's weight masks hold {_MASK_BITS}")
        dendrite = self.sa.Dendrite
        self.dendrite_code: dict[str, int] = {}
        for name, code in dict(target["dendrites"]).items():
            if name not in dendrite.__members__ or int(dendrite[name]) != int(code):
                raise SamnaJsonError(f"target dendrite {name!r} = {code} is not samna's "
                                     f"Dendrite.{name} ({', '.join(dendrite.__members__)})")
            self.dendrite_code[name] = int(code)
        self.value_keys = [f"value{i}" for i in range(max(self.cam_entries, self.sram_entries,
                                                          self.neurons_per_core))]
        self._synapses: dict[tuple[str, int, bool, int], dict[str, Any]] = {}
        self._destinations: dict[tuple[int, int, int], dict[str, Any]] = {}
        self.empty_synapse = self.synapse("none", 0, False, 0, 0, "")
        self.empty_destination = self.sa.Dynapse2Destination(
            core=[False] * _MASK_BITS, x_hop=0, y_hop=0, tag=0).json_wrapper()
        self.defaults = default_parameters()

    def check_tag(self, tag: Any, where: str) -> int:
        return _check_tag(tag, self.tags, where)

    def synapse(self, dendrite: str, mask: int, stp: bool, delay: int, tag: int,
                where: str) -> dict[str, Any]:
        key = (dendrite, mask, bool(stp), delay)
        template = self._synapses.get(key)
        if template is None:
            if dendrite not in self.dendrite_code:
                raise SamnaJsonError(f"field '{where}.dendrite' is {dendrite!r}, not a dendrite "
                                     f"of the target ({', '.join(self.dendrite_code)})")
            if not isinstance(delay, int) or not 0 <= delay < 4:
                raise SamnaJsonError(f"field '{where}.delay' must be a delay class 0..3 (two "
                                     f"flags), got {delay!r}")
            template = self.sa.Dynapse2Synapse(
                dendrite=self.sa.Dendrite(self.dendrite_code[dendrite]), stp=bool(stp),
                weight=_bits(mask, f"{where}.weight_mask"), precise_delay=bool(delay & 1),
                mismatched_delay=bool(delay >> 1 & 1), tag=0).json_wrapper()
            self._synapses[key] = template
        return {**template, "tag": tag}

    def destination(self, core_mask: int, x_hop: int, y_hop: int, tag: int,
                    where: str) -> dict[str, Any]:
        key = (core_mask, x_hop, y_hop)
        template = self._destinations.get(key)
        if template is None:
            bits = _bits(core_mask, f"{where}.core_mask")
            try:
                alias = self.sa.Dynapse2Destination(core=bits, x_hop=int(x_hop),
                                                    y_hop=int(y_hop), tag=0)
            except ValueError as exc:
                raise SamnaJsonError(f"field '{where}': {exc}") from None
            template = alias.json_wrapper()
            self._destinations[key] = template
        return {**template, "tag": tag}

    def jlist(self, items: list[Any]) -> dict[str, Any]:
        """rockpool's ``jlist_alias`` / ``jlist_regular`` form of a fixed-size array."""
        return dict(zip(self.value_keys, items, strict=False))

    def parameters(self, codes: Mapping[str, Mapping[str, Any]], where: str
                   ) -> list[dict[str, Any]]:
        sa = self.sa
        merged = {name: (coarse, fine) for name, coarse, fine in self.defaults}
        for name, code in codes.items():
            try:
                merged[name] = (int(code["coarse"]), int(code["fine"]))
            except (KeyError, TypeError, ValueError):
                raise SamnaJsonError(f"field '{where}.bias_codes.{name}' needs integer 'coarse' "
                                     "and 'fine'") from None
        params = {}
        for name in sorted(merged):
            coarse, fine = merged[name]
            kind = name[-1]
            if kind not in ("N", "P") or not (0 <= coarse <= 5 and 0 <= fine <= 255):
                raise SamnaJsonError(f"field '{where}.bias_codes.{name}': ({coarse}, {fine}) is "
                                     "not an N/P parameter code (coarse 0..5, fine 0..255)")
            params[name] = sa.Dynapse2Parameter(
                type=kind, coarse_value=coarse, fine_value=fine,
                _initial_type=sa.ParameterType.n if kind == "N" else sa.ParameterType.p)
        return sa.Dynapse2Core.jdict_alias(params)


# --------------------------------------------------------------------------- the translation
def config_to_samna(config: Mapping[str, Any]) -> dict[str, Any]:
    """samna's JSON document (``{"value0": {"chips": [...]}}``) of a ``dynapse2.json`` config."""
    b = _Builder(config)
    sa = b.sa
    readout_tag = {(r["chip"], r["core"], r["neuron"]): r["tag"]
                   for r in config.get("readout_channels", [])}
    used: dict[tuple[int, int], Mapping[str, Any]] = {}
    for ci, chip in enumerate(config["chips"]):
        for ki, core in enumerate(chip["cores"]):
            key = (int(chip["id"]), int(core["id"]))
            if not (0 <= key[0] < b.chips and 0 <= key[1] < b.cores_per_chip):
                raise SamnaJsonError(f"field 'chips[{ci}].cores[{ki}]' is core {key}, outside "
                                     f"the board's {b.chips} x {b.cores_per_chip} cores")
            used[key] = core

    empty_neuron = _neuron(b, [], [], dc=False)
    empty_params = b.parameters({}, "cores")
    chips = []
    for chip_id in range(b.chips):
        cores = []
        for core_id in range(b.cores_per_chip):
            core = used.get((chip_id, core_id))
            where = f"chips[{chip_id}].cores[{core_id}]"
            neurons: list[dict[str, Any]] = [empty_neuron] * b.neurons_per_core
            if core is not None:
                dc = float(core.get("dc", 0.0)) > 0
                for ni, neuron in enumerate(core["neurons"]):
                    slot = int(neuron["id"])
                    nw = f"{where}.neurons[{ni}]"
                    if not 0 <= slot < b.neurons_per_core:
                        raise SamnaJsonError(f"field '{nw}.id' is {slot}, outside 0.."
                                             f"{b.neurons_per_core - 1}")
                    monitor = readout_tag.get((chip_id, core_id, slot))
                    neurons[slot] = _used_neuron(b, neuron, monitor, dc, nw)
                params = b.parameters(core.get("bias_codes", {}), where)
            else:
                params = empty_params
            alias = sa.Dynapse2Core(
                neurons=[], neuron_monitoring_on=False, monitored_neuron=0, parameters={},
                sadc_enables=_all_false(sa.Dynapse2Core_CoreSadcEnables),
                enable_syaw_stdbuf_an=False, enable_pulse_extender_monitor1=False,
                enable_pulse_extender_monitor2=False, _id=core_id, _cookie=0)
            wrapper = alias.json_wrapper()
            wrapper["neurons"] = b.jlist(neurons)
            wrapper["parameters"] = params
            cores.append(wrapper)
        chip_alias = _empty_chip(sa)
        wrapper = chip_alias.json_wrapper()
        wrapper["cores"] = b.jlist(cores)
        chips.append(wrapper)
    configuration = sa.Dynapse2Configuration(chips=[]).json_wrapper()
    configuration["chips"] = chips
    return {"value0": configuration}


def _all_false(cls: type) -> Any:
    import dataclasses

    return cls(**{f.name: False for f in dataclasses.fields(cls)})


def _empty_chip(sa: Any) -> Any:
    """A ``Dynapse2Chip`` without cores and with samna's neutral chip-level settings."""
    vec = sa.Vec2_unsigned_int
    dvs = sa.Dynapse2DvsInterface(
        drop_events=False, dvs_mode=sa.DvsMode.Dvs128, off_events=False, on_events=False,
        pooling_shift=vec(0, 0), copy_events=False, copy_hop=sa.Vec2_int(0, 0),
        davis_req_ack_bugfix_delay_ns=0, origin=vec(0, 0), max=vec(0, 0),
        pixel_destinations=[], filter=sa.Dynapse2DvsFilter())
    bioamps = sa.Dynapse2Bioamps(
        common_parameters={}, channel_parameters=[], param_gen2_powerdown=False, gain=0,
        separate_parameters=False, monitor_channel_thuc=False, monitor_channel_thdc=False,
        monitor_channel_qfruc=False, monitor_channel_oruc=False, monitor_channel_osuc=False,
        monitor_channel_oauc=False, route=[])
    return sa.Dynapse2Chip(
        cores=[], global_parameters={}, shared_parameters01={}, shared_parameters23={},
        sadc_group_parameters01=[], sadc_group_parameters23=[],
        sadc_enables=_all_false(sa.Dynapse2Chip_ConfigSadcEnables), dvs_if=dvs,
        bioamps=bioamps, enable_pg0_reference_monitor=False, enable_pg1_reference_monitor=False,
        param_gen0_powerdown=False, param_gen1_powerdown=False)


def _used_neuron(b: _Builder, neuron: Mapping[str, Any], monitor_tag: int | None, dc: bool,
                 where: str) -> dict[str, Any]:
    return _neuron(b, *neuron_entries(b, neuron, monitor_tag, where), dc)


def neuron_entries(b: Any, neuron: Mapping[str, Any], monitor_tag: int | None, where: str
                   ) -> tuple[list[Any], list[Any]]:
    """A neuron's CAM entries (synapses) and SRAM entries (destinations, the monitoring entry
    first), checked and padded with empty entries to the target's counts. ``b`` makes the
    entries: ``synapse``, ``destination``, ``check_tag``, ``empty_synapse``,
    ``empty_destination``, ``cam_entries``, ``sram_entries`` (JSON fragments here, samna objects
    in ``board``)."""
    cam, sram = neuron.get("cam", []), neuron.get("sram", [])
    if len(cam) > b.cam_entries:
        raise SamnaJsonError(f"field '{where}.cam' holds {len(cam)} entries, a neuron has "
                             f"{b.cam_entries}")
    if len(sram) > b.sram_entries - 1:
        raise SamnaJsonError(f"field '{where}.sram' holds {len(sram)} entries; with entry "
                             f"{MONITOR_SLOT} kept for monitoring a neuron has "
                             f"{b.sram_entries - 1}")
    synapses = []
    for i, entry in enumerate(cam):
        ew = f"{where}.cam[{i}]"
        synapses.append(b.synapse(str(entry["dendrite"]), entry["weight_mask"],
                                  bool(entry.get("stp", False)), entry.get("delay", 0),
                                  b.check_tag(entry["tag"], ew), ew))
    if monitor_tag is None:
        monitor = b.empty_destination
    else:  # the readout's way to the host
        monitor = b.destination((1 << _MASK_BITS) - 1, *MONITOR_HOPS,
                                b.check_tag(monitor_tag, f"{where}.readout"), where)
    destinations = [monitor]
    for i, entry in enumerate(sram):
        ew = f"{where}.sram[{i}]"
        destinations.append(b.destination(entry["core_mask"], entry["x_hop"], entry["y_hop"],
                                          b.check_tag(entry["tag"], ew), ew))
    synapses += [b.empty_synapse] * (b.cam_entries - len(synapses))
    destinations += [b.empty_destination] * (b.sram_entries - len(destinations))
    return synapses, destinations


@functools.lru_cache(maxsize=4)
def _neuron_template(dc: bool) -> tuple[tuple[str, Any], ...]:
    sa = _alias()
    latches = {name: False for name in ("latch_so_adaptation", "latch_soif_kill",
                                        "latch_coho_ca_mem", "latch_ho_enable", "latch_ho_so_de",
                                        "latch_deam_ampa", "latch_denm_nmda",
                                        "latch_de_conductance", "latch_deam_alpha",
                                        "latch_denm_alpha", "latch_de_mux", "latch_soif_type",
                                        "latch_ho_active")}
    wrapper = sa.Dynapse2Neuron(synapses=[], destinations=[], latch_so_dc=dc,
                                **latches).json_wrapper()
    return tuple(wrapper.items())


def _neuron(b: _Builder, synapses: list[dict[str, Any]], destinations: list[dict[str, Any]],
            dc: bool) -> dict[str, Any]:
    synapses = synapses + [b.empty_synapse] * (b.cam_entries - len(synapses))  # empty neuron
    destinations = destinations + [b.empty_destination] * (b.sram_entries - len(destinations))
    doc = dict(_neuron_template(dc))
    doc["synapses"] = b.jlist(synapses)
    doc["destinations"] = b.jlist(destinations)
    return doc


def samna_json(config: Mapping[str, Any]) -> str:
    """The text of ``samna.json``: :func:`config_to_samna` as compact JSON in rockpool's key
    order (deterministic: the same configuration gives the same bytes)."""
    return json.dumps(config_to_samna(config), separators=(",", ":"), allow_nan=False) + "\n"
