"""samna's ``Dynapse2Configuration`` of a ``dynapse2.json`` document, and the drain that resets it.

Built from whatever namespace provides the classes: the real ``samna.dynapse2`` on a board
machine, rockpool's pure-Python mirrors (``rockpool.devices.dynapse.samna_alias``) for tests and
the virtual board. A neuron's entries come from ``samna.EntryBuilder``, the builder that writes
``samna.json`` too, so the file is the exact record of what is applied (the tests compare the
JSON text).

**A clean configuration.** Every run starts from a configuration built from defaults, never from
``model.get_configuration()``: samna documents that call as returning the model's current state,
so every switch, bias and chip setting eideploy does not set would be whatever the last user
left. rockpool builds its discharge configuration the same way, from a fresh
``samna.dynapse2.Dynapse2Configuration()`` (``DynapseSamna.__get_leaky_config``,
``rockpool/devices/dynapse/hardware/interface/samna.py``). Every neuron of every core is then
written (unused ones empty) and every core parameter set (rockpool's DynapSim defaults
overridden by the core's ``bias_codes``).

**The drain** (:func:`leaky_configuration`, :func:`drain_seconds`). The chip has no per-sample
reset, and its slowest circuits hold their state far longer than any pause between samples: a
core at the smallest leak code (0.30 pA) has ``tau_mem = C_mem U_T / (kappa I_leak)`` near
350 ms. rockpool's ``DynapseSamna.evolve`` therefore applies a leaky configuration after every
sample (``discharge_capacitors``): an empty network with every leak bias (``SOIF_LEAK_N`` and
the four dendrite ``*_TAU_P``) at its largest code, which shortens the slowest time constant to
tens of nanoseconds. eideploy does the same, for :func:`drain_seconds`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .. import biases
from ..compile import I_0, LEAK_BIAS, SYNAPSE_TAU_BIAS
from ..samna import (
    EntryBuilder,
    SamnaJsonError,
    all_false,
    empty_chip,
    mirror_parameter,
    monitor_tags,
    neuron_slot,
    parameter_codes,
    used_cores,
)

__all__ = ["SAMNA_FIELDS", "new_object", "samna_entries", "blank_configuration",
           "config_to_samna_configuration", "leaky_configuration", "drain_seconds",
           "DRAIN_BIASES", "DRAIN_FLOOR_S"]

#: The fields this package sets on samna's objects (the tests check them on rockpool's mirrors).
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
#: rockpool's leaky configuration: these biases at their largest code (coarse 5, fine 255).
DRAIN_BIASES = (LEAK_BIAS, *(SYNAPSE_TAU_BIAS[d] for d in ("ampa", "gaba", "nmda", "shunt")))
#: The drain is never shorter than this: the host cannot time less through USB, and it covers
#: the longest pulse extension and refractory period the compiler writes (about 100 us).
DRAIN_FLOOR_S = 1e-3
#: A state to drain starts at most at the largest bias current the generator makes (~2 uA).
_STATE_CEILING = 2.5e-6


def new_object(cls: Any, **fields: Any) -> Any:
    """A samna object with ``fields`` set: samna's classes are built empty and then assigned (as
    rockpool's allocator does); rockpool's mirrors are dataclasses that take the fields."""
    try:
        obj = cls()
    except TypeError:
        return cls(**fields)
    for name, value in fields.items():
        setattr(obj, name, value)
    return obj


def samna_entries(config: Mapping[str, Any], sm: Any) -> EntryBuilder:
    """The entry builder with samna's (or the mirrors') ``Dynapse2Synapse`` and
    ``Dynapse2Destination`` as factories."""

    def synapse(code: int, weight: list[bool], stp: bool, precise: bool, mismatched: bool,
                tag: int) -> Any:
        return new_object(sm.Dynapse2Synapse, dendrite=sm.Dendrite(code), stp=stp,
                          weight=weight, precise_delay=precise, mismatched_delay=mismatched,
                          tag=tag)

    def destination(core: list[bool], x_hop: int, y_hop: int, tag: int) -> Any:
        return new_object(sm.Dynapse2Destination, core=core, x_hop=x_hop, y_hop=y_hop, tag=tag)

    return EntryBuilder(config, synapse, destination)


def _set_parameters(sm: Any, core: Any, codes: Mapping[str, tuple[int, int]],
                    where: str) -> None:
    params = core.parameters
    for name, (coarse, fine) in codes.items():
        try:
            param = params[name]
        except KeyError:
            if not isinstance(params, dict):
                raise SamnaJsonError(f"{where}: samna's core has no parameter {name}") from None
            params[name] = mirror_parameter(sm, name, coarse, fine)
            continue
        param.coarse_value = coarse
        param.fine_value = fine
    if isinstance(params, dict):  # rockpool's mirror: a plain dict, written in name order
        core.parameters = dict(sorted(params.items()))


def blank_configuration(samna_module: Any, config: Mapping[str, Any]) -> Any:
    """A configuration of defaults for the configuration's board: samna's default-constructed
    object, or, from rockpool's mirrors (which have no defaults), every chip, core and neuron
    empty with samna's neutral chip-level settings (those ``samna.json`` writes) and every core
    parameter at rockpool's DynapSim default."""
    try:
        return samna_module.Dynapse2Configuration()
    except TypeError:
        pass
    sm = samna_module
    entries = samna_entries(config, sm)
    shape = entries.shape
    latches = {f.name: False for f in dataclasses.fields(sm.Dynapse2Neuron)
               if f.name.startswith("latch_")}
    defaults = parameter_codes({}, "cores")
    chips = []
    for _chip in range(shape.chips):
        cores = []
        for core_id in range(shape.cores_per_chip):
            neurons = [sm.Dynapse2Neuron(
                synapses=[entries.empty_synapse] * shape.cam_entries,
                destinations=[entries.empty_destination] * shape.sram_entries, **latches)
                for _ in range(shape.neurons_per_core)]
            cores.append(sm.Dynapse2Core(
                neurons=neurons, neuron_monitoring_on=False, monitored_neuron=0,
                parameters={n: mirror_parameter(sm, n, c, f) for n, (c, f) in defaults.items()},
                sadc_enables=all_false(sm.Dynapse2Core_CoreSadcEnables),
                enable_syaw_stdbuf_an=False, enable_pulse_extender_monitor1=False,
                enable_pulse_extender_monitor2=False, _id=core_id, _cookie=0))
        chip = empty_chip(sm)
        chip.cores = cores
        chips.append(chip)
    return sm.Dynapse2Configuration(chips=chips)


def config_to_samna_configuration(config: Mapping[str, Any], samna_module: Any, *,
                                  base: Any = None,
                                  monitor: Mapping[tuple[int, int, int], int] | None = None
                                  ) -> Any:
    """samna's ``Dynapse2Configuration`` of a ``dynapse2.json`` document (module doc).

    ``samna_module`` provides the classes (``samna.dynapse2``, or rockpool's ``samna_alias``);
    ``base`` is the object written into, by default a clean :func:`blank_configuration` (pass
    another only to test that everything is overwritten). Every neuron of every core of the
    board is written, every core's parameters set: the same content, entry for entry, as
    ``samna.json``. ``monitor`` adds host-bound monitoring entries ``{(chip, core, neuron):
    tag}`` to the readout neurons' (``runner.monitor_plan``). Raises ``SamnaJsonError`` naming
    the field that samna's objects cannot hold.
    """
    sm = samna_module
    entries = samna_entries(config, sm)
    shape = entries.shape
    configuration = base if base is not None else blank_configuration(sm, config)
    used = used_cores(config, shape)
    host_bound = {**monitor_tags(config), **dict(monitor or {})}
    chips = configuration.chips
    if len(chips) < shape.chips:
        raise SamnaJsonError(f"the samna configuration holds {len(chips)} chip(s); the export is "
                             f"for a board of {shape.chips}")
    empty_synapses = [entries.empty_synapse] * shape.cam_entries
    empty_destinations = [entries.empty_destination] * shape.sram_entries
    for chip_id in range(shape.chips):
        for core_id in range(shape.cores_per_chip):
            core_obj = chips[chip_id].cores[core_id]
            core, where = used.get((chip_id, core_id), ({}, f"core ({chip_id}, {core_id})"))
            content: dict[int, tuple[list[Any], list[Any]]] = {}
            dc = float(core.get("dc", 0.0)) > 0
            for ni, neuron in enumerate(core.get("neurons", [])):
                nw = f"{where}.neurons[{ni}]"
                slot = neuron_slot(neuron, shape, nw)
                content[slot] = entries.neuron_entries(
                    neuron, host_bound.get((chip_id, core_id, slot)), nw)
            neurons = core_obj.neurons
            for slot in range(shape.neurons_per_core):
                neuron_obj = neurons[slot]
                synapses, destinations = content.get(slot, (empty_synapses, empty_destinations))
                neuron_obj.synapses = list(synapses)
                neuron_obj.destinations = list(destinations)
                neuron_obj.latch_so_dc = dc and slot in content
            _set_parameters(sm, core_obj, parameter_codes(core.get("bias_codes", {}), where),
                            where)
    return configuration


def leaky_configuration(samna_module: Any, config: Mapping[str, Any]) -> Any:
    """rockpool's discharge configuration (module doc): a clean, empty configuration with every
    core's :data:`DRAIN_BIASES` at (5, 255)."""
    leaky = blank_configuration(samna_module, config)
    for chip in leaky.chips:
        for core in chip.cores:
            for name in DRAIN_BIASES:
                try:
                    param = core.parameters[name]
                except KeyError:
                    continue
                param.coarse_value = 5
                param.fine_value = 255
    return leaky


def drain_seconds() -> float:
    """How long the leaky configuration stays applied: long enough for the slowest drained
    circuit to bring a state from the largest current the bias generator makes down to the
    dark current ``I_0``, ``tau_max ln(I_ceiling / I_0)``, with ``tau_max`` the slowest of the
    membrane (``C_mem U_T / (kappa I)``) and dendrite (``C_syn U_T / (kappa I)``) time
    constants at the drain codes; never below :data:`DRAIN_FLOOR_S`."""
    taus = [biases.leak_tau(biases.bias_current(LEAK_BIAS, 5, 255))]
    taus += [biases.synapse_tau(biases.bias_current(SYNAPSE_TAU_BIAS[d], 5, 255), d)
             for d in ("ampa", "gaba", "nmda", "shunt")]
    return max(max(taus) * math.log(_STATE_CEILING / I_0), DRAIN_FLOOR_S)

