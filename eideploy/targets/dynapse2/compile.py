"""Compile an E-I graph for DYNAP-SE2: check, place, quantize, route, bias codes, configuration.

Stages (each a pure function with its own plain result, DESIGN §1):

1. :func:`~eideploy.targets.dynapse2.drc.check` on the graph as given; any violation raises
   :class:`DoesNotFit` carrying the full report (every violation, not the first);
2. :func:`~.place.place`: neurons to (chip, core, slot), a core per parameter group;
3. :func:`~.quantize.quantize_graph`: sparse synapses, g_E folded, one codebook and one scale
   per dendrite per core;
4. :func:`~.route.route`: tags, SRAM and CAM entries, the host's channel maps;
5. per-core bias codes (:func:`core_bias_currents`, then rockpool's generator tables through
   ``biases.core_biases``), requested vs realised recorded for every parameter;
6. :func:`~.config.build_config`: the ``dynapse2.json`` document.

Model quantities -> currents (the nominal relations of ``biases.py``):

* ``SOIF_LEAK_N`` from the population's ``tau`` (time steps of ``biases.DT_SECONDS``):
  ``leak_current(tau_seconds(tau))``; ``tau = inf`` or a readout without ``tau`` (a non-leaky
  integrate-and-fire neuron) requests 0 A (the smallest code);
* ``SOIF_SPKTHR_P`` from ``v_threshold`` (E, readout) or ``theta_i`` (interneurons);
* ``SOIF_DC_P`` from the core's DC value (b_E);
* ``SYAM_W0..W3_P`` from the core's four base weights;
* the dendrite gains ``DEAM_EGAIN_P`` (AMPA), ``DEGA_IGAIN_P`` (GABA), ``DESC_IGAIN_P`` (SHUNT)
  from the core's dendrite scales: ``s_d * dendrite_gain_reference(d)``. A DPI synapse's current
  is linear in its gain (``I_syn ~ (I_gain / I_tau) I_w``), so a CAM entry of dendrite ``d``
  weighs ``s_d * level(mask)``, as quantization and the configuration define it. The reference is
  DynapSim's default gain (rockpool's ``default_currents["Igain_<d>"]``): the gain ratio
  ``r_gain = 100`` times the dendrite's time-constant current at its default 10 ms,
  ``synapse_tau_current(10 ms, d)`` (8.69 nA for AMPA and SHUNT, 8.87 nA for GABA). So
  ``s_d = 1`` is DynapSim's nominal synapse, in which a weight of 1.0 is
  ``WEIGHT_UNIT_CURRENT``, and ``s_d = 1/35`` turns the SHUNT gain down 35-fold.

Currents in graph units (threshold, DC, base weights) are converted with one documented unit:
a model current of 1.0 is ``biases.WEIGHT_UNIT_CURRENT`` (10 nA, DynapSim's ``Iscale``), so the
ratios between weights, threshold and DC are kept. The chip cannot inject a negative DC: a
negative b_E requests 0 A and is flagged ``clipped`` (its requested value stays negative).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...graph.ir import EIGraph
from . import biases
from .config import build_config
from .drc import DRCReport, check
from .place import CoreAssignment, MappingError, Placement, place
from .quantize import QuantizedGraph, quantize_graph, target_dendrites
from .route import Routing, route
from .target import Target

__all__ = ["DoesNotFit", "CompiledNetwork", "compile_graph", "core_bias_currents",
           "dendrite_gain_reference", "LEAK_BIAS", "THRESHOLD_BIAS", "DC_BIAS",
           "DENDRITE_GAIN_BIAS", "DENDRITE_GAIN_RATIO", "DENDRITE_REFERENCE_TAU"]

LEAK_BIAS = "SOIF_LEAK_N"
THRESHOLD_BIAS = "SOIF_SPKTHR_P"
DC_BIAS = "SOIF_DC_P"
#: The per-core gain bias of each dendrite (rockpool's ``sim2device_se2``: ``Igain_ampa`` ->
#: ``DEAM_EGAIN_P`` ...).
DENDRITE_GAIN_BIAS = {"ampa": "DEAM_EGAIN_P", "nmda": "DENM_EGAIN_P", "gaba": "DEGA_IGAIN_P",
                      "shunt": "DESC_IGAIN_P"}
#: DynapSim's default ``r_gain_<dendrite>`` and synapse time constant (rockpool's
#: ``default_gain_ratios`` and ``default_time_constants``): the reference of a dendrite scale.
DENDRITE_GAIN_RATIO = 100.0
DENDRITE_REFERENCE_TAU = 10e-3


def dendrite_gain_reference(dendrite: str) -> float:
    """The gain current (A) of dendrite scale 1: DynapSim's default ``Igain_<dendrite>``,
    ``DENDRITE_GAIN_RATIO * synapse_tau_current(DENDRITE_REFERENCE_TAU, dendrite)``."""
    return DENDRITE_GAIN_RATIO * biases.synapse_tau_current(DENDRITE_REFERENCE_TAU, dendrite)


GAIN_BIAS = "SOIF_GAIN_N"
REFRACTORY_BIAS = "SOIF_REFR_N"
PULSE_BIAS = "SYPD_EXT_N"
#: The time-constant bias of each dendrite's DPI synapse (rockpool's ``sim2device_se2``).
SYNAPSE_TAU_BIAS = {"ampa": "DEAM_ETAU_P", "nmda": "DENM_ETAU_P", "gaba": "DEGA_ITAU_P",
                    "shunt": "DESC_ITAU_P"}
#: Dark current (A): the membrane's reset value and floor (rockpool's ``default_layout["Io"]``).
I_0 = 5e-13


def derived_currents(role: str, *, threshold: float, eps: float | None = None,
                     dt_model: float = biases.DT_SECONDS) -> dict[str, float]:
    """Currents (A) of the dynamics biases, derived from the discrete model the graph was trained
    as (one step = ``dt_model``; a model current 1.0 =
    ``WEIGHT_UNIT_CURRENT``; ``threshold`` = the core's ``SOIF_SPKTHR_P`` current, i.e.
    ``theta * WEIGHT_UNIT_CURRENT``; docs/analog-model.md §2; :func:`core_bias_currents` writes
    them into every core's codes):

    * synapses: the model holds a spike's current for the step it arrives in, so every dendrite
      gets ``tau_syn = dt_model``. The configuration's dendrite gains are
      ``s_d * DENDRITE_GAIN_RATIO * I_tau(DENDRITE_REFERENCE_TAU)``, and a pulse of width ``t_p``
      delivers ``(I_gain_d / I_tau_d) I_w t_p``: the model's charge ``s_d level
      WEIGHT_UNIT_CURRENT dt_model`` needs ``t_p tau_syn = dt_model DENDRITE_REFERENCE_TAU /
      DENDRITE_GAIN_RATIO``, so ``t_p`` = 100 us (``SYPD_EXT_N``);
    * ``SOIF_GAIN_N``: interneurons and the readout count threshold crossings (the model's
      ``floor(I / theta)``), so their gain makes the charge from reset to threshold, ``(C_mem U_T /
      kappa) (I_thr / I_gain + ln(I_thr / I_0))`` (the DPI's exponential start from ``I_0``
      included), equal the model's ``I_thr dt_model``. An E neuron (leaky, divided by ``I_div +
      eps``) gets the linear-regime match of its membrane: a charge ``Q`` raises ``I_mem`` by
      ``I_gain kappa Q / (C_mem U_T)``, the model's membrane by ``Q / eps``, so ``I_gain = C_mem
      U_T / (kappa dt_model eps)`` (``eps = 1`` without division; also the fallback of a counter
      whose threshold charge is below the exponential start's);
    * ``SOIF_REFR_N``: an E neuron fires at most once per model step: ``t_ref = dt_model``;
      counters have no such limit: ``t_ref = dt_model / 100``;
    * interneurons (no ``tau`` in the model: a count has no leak): ``SOIF_LEAK_N`` 0 A, i.e. the
      smallest code.
    """
    if role not in ("exc", "inh", "readout"):
        raise ValueError(f"no derived currents for core role {role!r}")
    scale = 1.0 if eps is None else float(eps)
    if not scale > 0 or not threshold > 0:
        raise ValueError(f"eps and threshold must be > 0, got {eps}, {threshold}")
    charge_unit = biases.C_MEM * biases.U_T / biases.KAPPA  # C: Q / charge_unit e-folds I_mem
    gain = charge_unit / (dt_model * scale)
    if role != "exc":
        linear = threshold * dt_model / charge_unit - math.log(threshold / I_0)
        if linear > 0:
            gain = threshold / linear
    t_syn = dt_model
    currents = {
        GAIN_BIAS: gain,
        PULSE_BIAS: biases.pulse_current(dt_model * DENDRITE_REFERENCE_TAU
                                         / (DENDRITE_GAIN_RATIO * t_syn)),
        REFRACTORY_BIAS: biases.refractory_current(dt_model if role == "exc" else dt_model / 100),
    }
    for dendrite, name in SYNAPSE_TAU_BIAS.items():
        currents[name] = biases.synapse_tau_current(t_syn, dendrite)
    if role == "inh":
        currents[LEAK_BIAS] = 0.0
    return currents


class DoesNotFit(ValueError):
    """The graph breaks design rules of the target; ``report`` lists every violation."""

    def __init__(self, report: DRCReport) -> None:
        self.report = report
        super().__init__(report.format())


@dataclass
class CompiledNetwork:
    """Everything compilation produced, stage by stage, and the configuration document."""

    drc: DRCReport
    placement: Placement
    qgraph: QuantizedGraph
    routing: Routing
    config: dict[str, Any]
    bias_report: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Resource use: neurons, cores, chips, CAM/SRAM utilisation, worst fan-in, tags."""
        target = self.config["target"]
        cam_limit = int(target["cam_entries_per_neuron"])
        sram_limit = int(target["sram_entries_per_neuron"]) - int(target["sram_reserved"])
        counts = {name: table.count for name, table in self.routing.cam.items()}
        neurons = sum(c.size for c in counts.values())
        cam_total = sum(int(c.sum()) for c in counts.values())
        worst_pop, worst_neuron, worst = "", -1, -1
        for name, count in counts.items():
            if count.size and int(count.max()) > worst:
                worst_pop, worst_neuron, worst = name, int(np.argmax(count)), int(count.max())
        sram = {name: np.count_nonzero(m, axis=1) for name, m in self.routing.sram.items()}
        sram_total = sum(int(s.sum()) for s in sram.values())
        return {
            "neurons": neurons,
            "cores": len(self.placement.cores),
            "chips": len(self.placement.chips_used),
            "synapses": int(sum(p.weight.size for p in self.qgraph.graph.projections)),
            "dropped_synapses": int(self.qgraph.stats["total"]["dropped"]),
            "cam": {"entries": cam_total, "capacity": neurons * cam_limit,
                    "utilisation": cam_total / max(1, neurons * cam_limit),
                    "max_per_neuron": max(worst, 0), "limit": cam_limit},
            "sram": {"entries": sram_total, "capacity": neurons * sram_limit,
                     "utilisation": sram_total / max(1, neurons * sram_limit),
                     "max_per_neuron": max((int(s.max(initial=0)) for s in sram.values()),
                                           default=0),
                     "limit": sram_limit},
            "worst_fan_in": {"population": worst_pop, "neuron": worst_neuron,
                             "entries": max(worst, 0), "limit": cam_limit},
            "tags": {"used": int(self.routing.stats["tags_used"]),
                     "sources": int(self.routing.stats["sources"]),
                     "max_per_core": int(self.routing.stats["max_sources_per_core"]),
                     "limit": int(target["tags"]), "mode": self.routing.tag_mode},
            "quantization": {"relative_rmse": self.qgraph.stats["total"]["relative_rmse"],
                             "max_error": self.qgraph.stats["total"]["max_error"],
                             "dendrites": {d: {k: v[k] for k in ("n_synapses", "dropped",
                                                                 "relative_rmse")}
                                           for d, v in self.qgraph.stats.get("dendrites",
                                                                             {}).items()}},
        }


def core_bias_currents(role: str, params: dict[str, Any], dc: float, bases: np.ndarray,
                       target: Target, dendrite_scales: Mapping[str, float] | None = None,
                       divisor_floor: float | None = None) -> dict[str, float]:
    """Requested currents (A) of one core's parameters, keyed by bias name (module doc).

    ``dendrite_scales`` (``{dendrite: s_d}``, as ``QuantizedGraph.dendrite_scales`` holds them per
    core) adds each dendrite's gain bias ``s_d * dendrite_gain_reference(d)``; without it no gain
    is requested (the chip's gains are then whatever they were). The dynamics biases (membrane
    gain, refractory period, pulse width, synapse time constants, the interneurons' leak) come
    from :func:`derived_currents`; ``divisor_floor`` is the ``eps`` of an E core that receives
    divisive (SHUNT) inhibition.
    """
    unit = biases.WEIGHT_UNIT_CURRENT
    currents: dict[str, float] = {}
    tau = params.get("tau")
    if tau is not None:
        tau = float(tau)
        currents[LEAK_BIAS] = 0.0 if math.isinf(tau) else biases.leak_current(
            biases.tau_seconds(tau))
    elif role == "readout":
        currents[LEAK_BIAS] = 0.0  # non-leaky integrate-and-fire readout
    threshold = params.get("v_threshold", params.get("theta_i"))
    if threshold is not None:
        currents[THRESHOLD_BIAS] = float(threshold) * unit
    currents[DC_BIAS] = float(dc) * unit
    if threshold is not None and float(threshold) > 0 and role in ("exc", "inh", "readout"):
        derived = derived_currents(role, threshold=float(threshold) * unit, eps=divisor_floor)
        for name, current in derived.items():
            currents.setdefault(name, current)
    for name, base in zip(target.weight_biases, np.asarray(bases, dtype=np.float64),
                          strict=True):
        currents[name] = float(base) * unit
    for dendrite, scale in (dendrite_scales or {}).items():
        if dendrite not in DENDRITE_GAIN_BIAS:
            raise MappingError(f"no gain bias for dendrite {dendrite!r}; known: "
                               f"{', '.join(DENDRITE_GAIN_BIAS)}")
        gain = float(scale) * dendrite_gain_reference(dendrite)
        if dendrite == "shunt" and divisor_floor and currents.get(LEAK_BIAS):
            # the chip's divisor is I_leak + I_shunt, the model's eps + I_div: a model unit of
            # I_div must be I_leak / eps of SHUNT current (not the 10 nA unit of the others),
            # so that the leak is the floor eps and the division is the trained one
            gain *= currents[LEAK_BIAS] / (divisor_floor * unit)
        currents[DENDRITE_GAIN_BIAS[dendrite]] = gain
    unknown = [n for n in currents if n not in target.bias_names]
    if unknown:
        raise MappingError(f"target {target.name} has no per-core bias {unknown}")
    return currents


def _core_scales(qgraph: QuantizedGraph, key: tuple[int, int], target: Target
                 ) -> dict[str, float]:
    """The core's dendrite scales, 1 for every dendrite the quantized graph does not scale (as
    the configuration writes them)."""
    scales = qgraph.dendrite_scales.get(key, {})
    return {d: float(scales.get(d, 1.0)) for d in target_dendrites(target)}


def _divisor_floor(graph: EIGraph, assignment: CoreAssignment) -> float | None:
    """``eps`` of an E core whose populations receive SHUNT inhibition (``fixed-eps``), else
    ``None``."""
    names = {p for p, _, _ in assignment.slices}
    divided = any(p.kind == "div" and p.target in names for p in graph.projections)
    if assignment.role != "exc" or not divided:
        return None
    return graph.division_settings.divisor_floor


def _bias_codes(qgraph: QuantizedGraph, placement: Placement, target: Target
                ) -> tuple[dict[tuple[int, int], dict[str, dict[str, Any]]], list[dict[str, Any]]]:
    per_core: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    report: list[dict[str, Any]] = []
    for assignment in placement.cores:
        key = assignment.key
        try:
            currents = core_bias_currents(assignment.role, assignment.params, qgraph.dc[key],
                                          qgraph.codebooks[key].bases, target,
                                          _core_scales(qgraph, key, target),
                                          _divisor_floor(qgraph.graph, assignment))
        except ValueError as exc:
            names = ", ".join(p for p, _, _ in assignment.slices)
            raise MappingError(f"core {key} ({names}): {exc}") from None
        # a negative DC cannot be injected: code the nearest realisable current, 0 A
        codes = biases.core_biases({n: max(c, 0.0) for n, c in currents.items()})
        per_core[key] = {}
        for name, code in codes.items():
            requested = currents[name]
            error = (abs(code.realised - requested) / abs(requested)
                     if requested != 0 else math.inf)
            clipped = code.clipped or requested < 0
            per_core[key][name] = {"coarse": code.coarse, "fine": code.fine,
                                   "requested": requested, "realised": code.realised,
                                   "error": error if math.isfinite(error) else None}
            report.append({"chip": key[0], "core": key[1], "name": name,
                           "requested": requested, "coarse": code.coarse, "fine": code.fine,
                           "realised": code.realised,
                           "error": error if math.isfinite(error) else None,
                           "clipped": clipped})
    return per_core, report


def compile_graph(graph: EIGraph, target: Target, *, seed: int = 0) -> CompiledNetwork:
    """Compile ``graph`` for ``target`` (module doc); deterministic for a seed.

    Raises :class:`DoesNotFit` (every design-rule violation) or :class:`MappingError` (a limit
    only placement or routing can see: SRAM destinations, tag colouring).
    """
    report = check(graph, target)
    if not report.ok:
        raise DoesNotFit(report)
    placement = place(graph, target)
    qgraph = quantize_graph(graph, placement, target, seed=seed)
    routing = route(qgraph, placement, target)
    codes, bias_report = _bias_codes(qgraph, placement, target)
    config = build_config(qgraph, placement, routing, target, bias_codes=codes)
    return CompiledNetwork(report, placement, qgraph, routing, config, bias_report)
