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
:func:`samna_json` gives its deterministic text. A neuron's CAM and SRAM entries and their checks
come from one builder, :class:`EntryBuilder`, which the board path
(``board.configuration``) uses too with samna's classes as factories: ``samna.json`` is, entry
for entry, what ``eideploy run`` applies (tests compare the texts).

**What samna.json is, and is not.** It is a *record* in the JSON form of rockpool's mirrors
(``json_wrapper()``), for reading, diffing and for rockpool; it is not a file samna's own
loader is known to accept: the mirrors write placeholder bookkeeping fields (``_address``,
``_cookie`` 0 in every parameter and core) that samna fills from the chip, and no samna was
available to check a round trip. The board path never loads it: it builds samna's objects
from ``dynapse2.json`` with the same builder.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .rockpool_shim import rockpool_import

__all__ = ["config_to_samna", "samna_json", "SamnaJsonError", "MONITOR_SLOT", "MONITOR_HOPS",
           "MASK_BITS", "BoardShape", "EntryBuilder", "mask_bits", "parameter_codes",
           "mirror_parameter", "default_parameters", "rockpool_mirrors", "used_cores",
           "neuron_slot", "monitor_tags", "all_false", "empty_chip"]

#: The SRAM entry kept for monitoring a neuron from the host (rockpool's allocator: the first).
MONITOR_SLOT = 0
#: Hops of an event bound for the host (rockpool's ``get_monitor_destination``).
MONITOR_HOPS = (-7, -7)
#: samna's objects have four bits in every mask: weight masks and core masks.
MASK_BITS = 4


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


def rockpool_mirrors() -> Any:
    """rockpool's pure-Python mirrors of samna's DYNAP-SE2 classes
    (``rockpool.devices.dynapse.samna_alias``); ``ImportError`` without rockpool."""
    return _alias()


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


# --------------------------------------------------------------------------- entries
def mask_bits(value: Any, where: str) -> list[bool]:
    """A 4-bit mask (weight mask or core mask) as samna's four booleans, bit k first."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << MASK_BITS:
        raise SamnaJsonError(f"field '{where}' must be a {MASK_BITS}-bit mask (0..15), got "
                             f"{value!r}")
    return [bool(value >> k & 1) for k in range(MASK_BITS)]


@dataclass(frozen=True)
class BoardShape:
    """The fixed array sizes of samna's objects for a configuration's ``target`` section."""

    chips: int
    cores_per_chip: int
    neurons_per_core: int
    cam_entries: int
    sram_entries: int
    tags: int
    dendrite_code: dict[str, int]

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> BoardShape:
        target = config["target"]
        cores = int(target["cores_per_chip"])
        if cores > MASK_BITS:
            raise SamnaJsonError(f"target {target.get('name')!r} has {cores} cores per chip; "
                                 f"samna's core masks hold {MASK_BITS}")
        if int(target["base_weights_per_core"]) != MASK_BITS:
            raise SamnaJsonError(f"target {target.get('name')!r} has "
                                 f"{target['base_weights_per_core']} base weights per core; "
                                 f"samna's weight masks hold {MASK_BITS}")
        return cls(int(target["chips_per_board"]), cores, int(target["neurons_per_core"]),
                   int(target["cam_entries_per_neuron"]), int(target["sram_entries_per_neuron"]),
                   int(target["tags"]),
                   {str(k): int(v) for k, v in dict(target["dendrites"]).items()})


#: ``make_synapse(dendrite_code, weight_bits, stp, precise_delay, mismatched_delay, tag)``
SynapseFactory = Callable[[int, list[bool], bool, bool, bool, int], Any]
#: ``make_destination(core_bits, x_hop, y_hop, tag)``
DestinationFactory = Callable[[list[bool], int, int, int], Any]


class EntryBuilder:
    """The one builder of a neuron's CAM entries (``Dynapse2Synapse``) and SRAM entries
    (``Dynapse2Destination``) and of their checks, for ``samna.json`` (JSON fragments) and for
    the board's samna objects alike: only the two factories differ, so what the file records
    and what is applied to a chip cannot drift apart.

    Checks (each error names the field): dendrite among the target's, delay class 0..3 (two
    flags: ``precise_delay`` = bit 0, ``mismatched_delay`` = bit 1), 4-bit weight and core
    masks, tag within the target's tags, hops within +-7 (samna's ``Dynapse2Destination``
    refuses more), at most ``cam_entries`` CAM entries and ``sram_entries - 1`` SRAM entries
    (entry ``MONITOR_SLOT`` is kept for monitoring).
    """

    def __init__(self, config: Mapping[str, Any], make_synapse: SynapseFactory,
                 make_destination: DestinationFactory) -> None:
        self.shape = BoardShape.of(config)
        self._make_synapse, self._make_destination = make_synapse, make_destination
        self.empty_synapse = self.synapse("none", 0, False, 0, 0, "cam")
        self.empty_destination = self._make_destination([False] * MASK_BITS, 0, 0, 0)

    def check_tag(self, tag: Any, where: str) -> int:
        if not isinstance(tag, int) or isinstance(tag, bool) or not 0 <= tag < self.shape.tags:
            raise SamnaJsonError(f"field '{where}.tag' must be an integer in "
                                 f"0..{self.shape.tags - 1}, got {tag!r}")
        return tag

    def synapse(self, dendrite: str, mask: Any, stp: bool, delay: Any, tag: int,
                where: str) -> Any:
        code = self.shape.dendrite_code.get(dendrite)
        if code is None:
            raise SamnaJsonError(f"field '{where}.dendrite' is {dendrite!r}, not a dendrite of "
                                 f"the target ({', '.join(self.shape.dendrite_code)})")
        if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay < 4:
            raise SamnaJsonError(f"field '{where}.delay' must be a delay class 0..3 (two "
                                 f"flags), got {delay!r}")
        return self._make_synapse(code, mask_bits(mask, f"{where}.weight_mask"), bool(stp),
                                  bool(delay & 1), bool(delay >> 1 & 1), tag)

    def destination(self, core_mask: Any, x_hop: Any, y_hop: Any, tag: int, where: str) -> Any:
        if not all(isinstance(h, int) and not isinstance(h, bool) and abs(h) <= 7
                   for h in (x_hop, y_hop)):
            raise SamnaJsonError(f"field '{where}': hops ({x_hop}, {y_hop}) must be integers "
                                 "within +-7")
        return self._make_destination(mask_bits(core_mask, f"{where}.core_mask"), x_hop, y_hop,
                                      tag)

    def neuron_entries(self, neuron: Mapping[str, Any], monitor_tag: int | None, where: str
                       ) -> tuple[list[Any], list[Any]]:
        """A ``dynapse2.json`` neuron's CAM entries and SRAM entries (the monitoring entry
        first: all cores, ``MONITOR_HOPS``, ``monitor_tag``; empty when it is ``None``), checked
        and padded with empty entries to the target's counts."""
        shape = self.shape
        cam, sram = neuron.get("cam", []), neuron.get("sram", [])
        if len(cam) > shape.cam_entries:
            raise SamnaJsonError(f"field '{where}.cam' holds {len(cam)} entries, a neuron has "
                                 f"{shape.cam_entries}")
        if len(sram) > shape.sram_entries - 1:
            raise SamnaJsonError(f"field '{where}.sram' holds {len(sram)} entries; with entry "
                                 f"{MONITOR_SLOT} kept for monitoring a neuron has "
                                 f"{shape.sram_entries - 1}")
        synapses = []
        for i, entry in enumerate(cam):
            ew = f"{where}.cam[{i}]"
            synapses.append(self.synapse(str(entry["dendrite"]), entry["weight_mask"],
                                         bool(entry.get("stp", False)), entry.get("delay", 0),
                                         self.check_tag(entry["tag"], ew), ew))
        if monitor_tag is None:
            monitor = self.empty_destination
        else:  # the neuron's way to the host
            monitor = self.destination((1 << MASK_BITS) - 1, *MONITOR_HOPS,
                                       self.check_tag(monitor_tag, f"{where}.monitor"), where)
        destinations = [monitor]
        for i, entry in enumerate(sram):
            ew = f"{where}.sram[{i}]"
            destinations.append(self.destination(entry["core_mask"], entry["x_hop"],
                                                 entry["y_hop"], self.check_tag(entry["tag"], ew),
                                                 ew))
        synapses += [self.empty_synapse] * (shape.cam_entries - len(synapses))
        destinations += [self.empty_destination] * (shape.sram_entries - len(destinations))
        return synapses, destinations


def parameter_codes(codes: Mapping[str, Any], where: str) -> dict[str, tuple[int, int]]:
    """Every core parameter's (coarse, fine): rockpool's DynapSim defaults for all of them
    (:func:`default_parameters`), overridden by a core's ``bias_codes``; sorted by name."""
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


def mirror_parameter(sa: Any, name: str, coarse: int, fine: int) -> Any:
    """rockpool's ``Dynapse2Parameter`` mirror of a code (type N or P from the name)."""
    kind = name[-1]
    return sa.Dynapse2Parameter(type=kind, coarse_value=coarse, fine_value=fine,
                                _initial_type=sa.ParameterType.n if kind == "N"
                                else sa.ParameterType.p)


class _JsonEntries(EntryBuilder):
    """JSON fragments made by rockpool's classes, cached per distinct content: a board holds up
    to 262144 CAM entries but only a few hundred distinct (dendrite, mask, flags) combinations,
    and the tag is the only field that varies between them."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.sa = _alias()
        dendrite = self.sa.Dendrite
        for name, code in dict(config["target"]["dendrites"]).items():
            if name not in dendrite.__members__ or int(dendrite[name]) != int(code):
                raise SamnaJsonError(f"target dendrite {name!r} = {code} is not samna's "
                                     f"Dendrite.{name} ({', '.join(dendrite.__members__)})")
        self._synapses: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._destinations: dict[tuple[Any, ...], dict[str, Any]] = {}
        super().__init__(config, self._synapse_json, self._destination_json)
        shape = self.shape
        self.value_keys = [f"value{i}" for i in range(max(shape.cam_entries, shape.sram_entries,
                                                          shape.neurons_per_core))]

    def _synapse_json(self, code: int, weight: list[bool], stp: bool, precise: bool,
                      mismatched: bool, tag: int) -> dict[str, Any]:
        key = (code, tuple(weight), stp, precise, mismatched)
        template = self._synapses.get(key)
        if template is None:
            template = self.sa.Dynapse2Synapse(
                dendrite=self.sa.Dendrite(code), stp=stp, weight=weight, precise_delay=precise,
                mismatched_delay=mismatched, tag=0).json_wrapper()
            self._synapses[key] = template
        return {**template, "tag": tag}

    def _destination_json(self, core: list[bool], x_hop: int, y_hop: int, tag: int
                          ) -> dict[str, Any]:
        key = (tuple(core), x_hop, y_hop)
        template = self._destinations.get(key)
        if template is None:
            template = self.sa.Dynapse2Destination(core=core, x_hop=x_hop, y_hop=y_hop,
                                                   tag=0).json_wrapper()
            self._destinations[key] = template
        return {**template, "tag": tag}

    def jlist(self, items: list[Any]) -> dict[str, Any]:
        """rockpool's ``jlist_alias`` / ``jlist_regular`` form of a fixed-size array."""
        return dict(zip(self.value_keys, items, strict=False))

    def parameters(self, codes: Mapping[str, Mapping[str, Any]], where: str
                   ) -> list[dict[str, Any]]:
        params = {name: mirror_parameter(self.sa, name, coarse, fine)
                  for name, (coarse, fine) in parameter_codes(codes, where).items()}
        return self.sa.Dynapse2Core.jdict_alias(params)


# --------------------------------------------------------------------------- the translation
def used_cores(config: Mapping[str, Any], shape: BoardShape
               ) -> dict[tuple[int, int], tuple[Mapping[str, Any], str]]:
    """The configuration's cores by (chip, core), each with its field path; refuses a core
    outside the board."""
    used: dict[tuple[int, int], tuple[Mapping[str, Any], str]] = {}
    for ci, chip in enumerate(config["chips"]):
        for ki, core in enumerate(chip["cores"]):
            key = (int(chip["id"]), int(core["id"]))
            if not (0 <= key[0] < shape.chips and 0 <= key[1] < shape.cores_per_chip):
                raise SamnaJsonError(f"field 'chips[{ci}].cores[{ki}]' is core {key}, outside "
                                     f"the board's {shape.chips} x {shape.cores_per_chip} cores")
            used[key] = (core, f"chips[{ci}].cores[{ki}]")
    return used


def neuron_slot(neuron: Mapping[str, Any], shape: BoardShape, where: str) -> int:
    slot = neuron["id"]
    if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < \
            shape.neurons_per_core:
        raise SamnaJsonError(f"field '{where}.id' is {slot!r}, outside 0.."
                             f"{shape.neurons_per_core - 1}")
    return slot


def monitor_tags(config: Mapping[str, Any]) -> dict[tuple[int, int, int], int]:
    """The neurons that reach the host through their monitoring entry: the readout neurons,
    each with its readout tag (``readout_channels``)."""
    return {(int(r["chip"]), int(r["core"]), int(r["neuron"])): r["tag"]
            for r in config.get("readout_channels", [])}


def config_to_samna(config: Mapping[str, Any]) -> dict[str, Any]:
    """samna's JSON document (``{"value0": {"chips": [...]}}``) of a ``dynapse2.json`` config."""
    b = _JsonEntries(config)
    sa, shape = b.sa, b.shape
    monitored = monitor_tags(config)
    used = used_cores(config, shape)
    empty_neuron = _neuron(b, [], [], dc=False)
    empty_params = b.parameters({}, "cores")
    chips = []
    for chip_id in range(shape.chips):
        cores = []
        for core_id in range(shape.cores_per_chip):
            core, where = used.get((chip_id, core_id), (None, ""))
            neurons: list[dict[str, Any]] = [empty_neuron] * shape.neurons_per_core
            if core is not None:
                dc = float(core.get("dc", 0.0)) > 0
                for ni, neuron in enumerate(core["neurons"]):
                    nw = f"{where}.neurons[{ni}]"
                    slot = neuron_slot(neuron, shape, nw)
                    entries = b.neuron_entries(neuron, monitored.get((chip_id, core_id, slot)),
                                               nw)
                    neurons[slot] = _neuron(b, *entries, dc)
                params = b.parameters(core.get("bias_codes", {}), where)
            else:
                params = empty_params
            alias = sa.Dynapse2Core(
                neurons=[], neuron_monitoring_on=False, monitored_neuron=0, parameters={},
                sadc_enables=all_false(sa.Dynapse2Core_CoreSadcEnables),
                enable_syaw_stdbuf_an=False, enable_pulse_extender_monitor1=False,
                enable_pulse_extender_monitor2=False, _id=core_id, _cookie=0)
            wrapper = alias.json_wrapper()
            wrapper["neurons"] = b.jlist(neurons)
            wrapper["parameters"] = params
            cores.append(wrapper)
        wrapper = empty_chip(sa).json_wrapper()
        wrapper["cores"] = b.jlist(cores)
        chips.append(wrapper)
    configuration = sa.Dynapse2Configuration(chips=[]).json_wrapper()
    configuration["chips"] = chips
    return {"value0": configuration}


def all_false(cls: type) -> Any:
    """A samna flag record (sADC enables) with every flag off, as samna's default."""
    return cls(**{f.name: False for f in dataclasses.fields(cls)})


def empty_chip(sa: Any) -> Any:
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
        sadc_enables=all_false(sa.Dynapse2Chip_ConfigSadcEnables), dvs_if=dvs,
        bioamps=bioamps, enable_pg0_reference_monitor=False, enable_pg1_reference_monitor=False,
        param_gen0_powerdown=False, param_gen1_powerdown=False)


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


def _neuron(b: _JsonEntries, synapses: list[dict[str, Any]], destinations: list[dict[str, Any]],
            dc: bool) -> dict[str, Any]:
    synapses = synapses + [b.empty_synapse] * (b.shape.cam_entries - len(synapses))
    destinations = destinations + [b.empty_destination] * (b.shape.sram_entries
                                                           - len(destinations))
    doc = dict(_neuron_template(dc))
    doc["synapses"] = b.jlist(synapses)
    doc["destinations"] = b.jlist(destinations)
    return doc


def samna_json(config: Mapping[str, Any]) -> str:
    """The text of ``samna.json``: :func:`config_to_samna` as compact JSON in rockpool's key
    order (deterministic: the same configuration gives the same bytes)."""
    return json.dumps(config_to_samna(config), separators=(",", ":"), allow_nan=False) + "\n"
