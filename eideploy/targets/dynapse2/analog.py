"""Continuous-time simulation of a DYNAP-SE2 configuration with device mismatch.

Specification and measurements: docs/analog-model.md.

The network a ``dynapse2.json`` describes, run as the chip's circuits would run it: DPI neurons
(Chicca et al. 2014; rockpool's DynapSim, ``rockpool/devices/dynapse/simulation/dynapsim.py``)
with one DPI synapse per dendrite type (AMPA, GABA, SHUNT), every current recovered from the
(coarse, fine) codes of the configuration through rockpool's bias generator tables
(``biases.bias_current``), integrated with a time step ``dt`` of a few microseconds.

Per neuron ``j`` (currents in A, time in s; module functions named in brackets):

* synapse of dendrite ``d`` [:func:`synapse_step`]: a presynaptic spike opens a pulse of width
  ``t_pulse`` (``SYPD_EXT_N``) during which the synapse is driven by the CAM entry's weight
  current ``I_w`` (the sum of the core's ``SYAM_W0..3`` currents its mask selects); the DPI in its
  linear regime filters the drive: ``tau_d dI_d/dt = -I_d + (I_gain_d / I_tau_d) sum I_w``,
  ``tau_d = C_d U_T / (kappa I_tau_d)``;
* membrane [:func:`membrane_step`]: ``I_in = I_ampa - I_gaba + I_dc`` (GABA subtracts),
  ``I_leak = I_tau + I_shunt`` (SHUNT adds to the leak),
  ``tau (1 + I_gain / I_mem) dI_mem/dt = I_inf - I_mem`` with ``tau = C_mem U_T / (kappa
  I_leak)`` and ``I_inf = (I_gain / I_leak) (I_in - I_leak)`` (clipped at 0);
* spike when ``I_mem >= I_spkthr``; ``I_mem`` is reset to the dark current ``I_0`` and held there
  for ``t_ref`` (``SOIF_REFR_N``); the spike reaches its targets one ``dt`` later.

Inputs are the host's events: the graph's input encoded exactly as the float executor encodes it
(``graph.host.Host``), the spikes of model step ``t`` sent at ``t * DT_SECONDS``. The
readout's spike counts over the window decide the class (ties: the higher membrane current, as
``readout_decision``). Interneurons (role ``inh``) are spiking neurons of their own cores; the
model's ``floor(relu(I_IE) / theta_I)`` is their spike count per step.

Every bias is read from the configuration's codes. Exports written before the compiler wrote
the dynamics biases (gain, refractory period, pulse width, synapse time constants, interneuron
leak) get them from a documented policy, ``unset``: ``"derived"`` (default: what the compiler
now writes, ``compile.derived_currents``) or ``"dynapsim"`` (rockpool's DynapSim defaults, which
is what such an export's ``samna.json`` uploaded for them). Every filled current is rounded to a
code the generator realises.

Device mismatch (``mismatch`` = relative standard deviation, ``numpy.random.default_rng(seed)``):
each neuron's leak, gain, threshold, DC and refractory currents, each neuron's synapse time
constant and gain current per dendrite, and each CAM entry's weight current and pulse width are
multiplied by their own factor ``1 + mismatch * N(0, 1)`` (clipped at ``MISMATCH_FLOOR``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse

from ...graph.host import Host, readout_decision
from ...graph.ir import DivisionSettings, EIGraph
from ...quant import subset_sums
from . import analog_fast, analog_piecewise, analog_torch, biases
from .compile import (
    DC_BIAS,
    DENDRITE_GAIN_BIAS,
    GAIN_BIAS,
    I_0,
    LEAK_BIAS,
    LINEAR_POLICY,
    PULSE_BIAS,
    REFRACTORY_BIAS,
    SYNAPSE_TAU_BIAS,
    THRESHOLD_BIAS,
    derived_currents,
)
from .config import ConfigError, config_to_graph

__all__ = ["AnalogSimulator", "AnalogResult", "AnalogAccuracy", "CoreBiases", "accuracy_trials",
           "core_biases", "derived_currents", "readout_calibration", "fi_curve", "dpi_rate",
           "membrane_step", "synapse_step", "dpi_synapse_step", "delay_seconds", "MismatchDraws",
           "cam_delay_classes", "DEFAULT_DT", "SYNAPSE_MODELS", "DELAY_BIASES", "I_0", "GAIN_BIAS",
           "REFRACTORY_BIAS", "PULSE_BIAS", "SYNAPSE_TAU_BIAS", "UNSET_POLICIES", "MISMATCH_FLOOR",
           "TAIL_STEPS", "INTEGRATORS", "ReadoutDecoder", "fit_readout_decoder", "DECODER_RIDGE",
           "calibration_factors", "stack_networks", "run_draws", "network_arrays",
           "network_from_arrays"]

#: Integration step (s). The fastest things the circuits do: the 100 us pulses of the derived
#: biases (10 us with rockpool's defaults, still resolved), a counting neuron's inter-spike
#: interval down to ~50 us at 20 spikes per model step, and the DPI's start from reset (a few us,
#: followed exactly in the log domain). Spike times are interpolated within the step, so rates
#: do not snap to the grid. Measured on the digits model: 5 us moves accuracy by < 1 point, 20 us
#: loses ~2 points; 10 us runs the 360-sample test split in ~3 s per trial on one thread.
DEFAULT_DT = 1e-5
#: How a dendrite's current enters the neuron.
_EXCITATORY, _SUBTRACTIVE, _SHUNTING = ("ampa", "nmda"), ("gaba",), ("shunt",)
UNSET_POLICIES = ("derived", "dynapsim")
#: The synapse equation: ``"dpi"`` the full DPI (:func:`dpi_synapse_step`, the default),
#: ``"linear"`` its linear approximation (:func:`synapse_step`, rockpool's DynapSim).
SYNAPSE_MODELS = ("dpi", "linear")
#: The core-shared bias of delay class 1, 2, 3 (CAM entry flags: bit 0 ``precise_delay``, bit 1
#: ``mismatched_delay``): the target's ``[biases] delays`` order.
DELAY_BIASES = ("SYPD_DLY0_P", "SYPD_DLY1_P", "SYPD_DLY2_P")
#: The integrators of the same equations: ``"piecewise"`` (``analog_piecewise.simulate``, the
#: default: a 100 us step, spike times and pulse edges exact, the neuron in closed form between
#: steps), ``"fast"`` (``analog_fast.simulate``: the reference's steps, compiled) and
#: ``"reference"`` (``_simulate``, numpy), and ``"torch"`` (``analog_torch.simulate``: the
#: reference's steps in torch, on a GPU where there is one); ``benchmarks/analog.py`` compares
#: them.
INTEGRATORS = ("piecewise", "fast", "reference", "torch")
#: Smallest mismatch factor: a current stays positive even at a 5-sigma draw of 20% mismatch.
MISMATCH_FLOOR = 0.05
#: The host counts readout spikes for ``T + TAIL_STEPS`` model steps: the analog chain needs
#: time to pass the last input step's charge on (a synapse of ``tau_syn = DT`` has delivered all
#: but ``exp(-2)`` of it two steps later); the model computes each step without latency.
TAIL_STEPS = 2
#: rockpool's DynapSim name of each bias that ``unset="dynapsim"`` fills (``default_currents``).
_DYNAPSIM_NAMES = {GAIN_BIAS: "Igain_mem", REFRACTORY_BIAS: "Iref", PULSE_BIAS: "Ipulse",
                   LEAK_BIAS: "Itau_mem", "DEAM_ETAU_P": "Itau_ampa", "DENM_ETAU_P": "Itau_nmda",
                   "DEGA_ITAU_P": "Itau_gaba", "DESC_ITAU_P": "Itau_shunt"}


# --------------------------------------------------------------------------- the circuits
def synapse_step(i_syn: np.ndarray, drive: np.ndarray, decay: np.ndarray) -> np.ndarray:
    """One step of the DPI synapse in its linear regime (rockpool's DynapSim):
    ``tau dI/dt = -I + drive``, exact for a drive constant over the step,
    ``decay = exp(-dt / tau)``; ``drive = (I_gain / I_tau) * sum of the open pulses' I_w``."""
    return drive + (i_syn - drive) * decay


#: Below this drive (A) a synapse is undriven: the pulse bookkeeping's float residue.
_DRIVE_FLOOR = 1e-3 * I_0


def dpi_synapse_step(i_syn: np.ndarray, drive: np.ndarray, i_gain: np.ndarray,
                     decay: np.ndarray) -> np.ndarray:
    """One step of the full DPI synapse (Bartolozzi & Indiveri 2007, Eq. 8; Chicca et al. 2014,
    Eq. 3; teili's ``DPISyn``):

    ``tau (1 + I_gain / I_syn) dI_syn/dt + I_syn + I_gain = I_gain I_w / I_tau``,

    ``I_w`` the summed weight current of the open pulses, ``drive = (I_gain / I_tau) I_w``.
    In ``w = I_syn / I_gain``, ``u = w + ln w`` it is the relaxation ``tau du/dt = drive /
    I_gain - 1 - w`` (the neuron's form, :func:`membrane_step`), integrated by exponential
    Euler in ``u`` while driven; undriven, ``dI_syn/dt = -I_syn / tau`` exactly (the ``I_gain``
    terms cancel), so the decay is ``I_syn * decay``. Floored at the dark current ``I_0``, the
    synapse at rest. Linear (:func:`synapse_step`) where ``I_syn >> I_gain`` (``I_w >> I_tau``)
    and the start from rest is short: a pulse from rest loses the input charge
    ``(C U_T / kappa) ln(I_syn / I_0)`` of the ``I_w t_pulse`` it carries (docs §1)."""
    out = i_syn * decay
    on = drive > _DRIVE_FLOOR
    if on.any():
        gain = np.broadcast_to(i_gain, i_syn.shape)[on]
        kept = np.broadcast_to(decay, i_syn.shape)[on]
        w = i_syn[on] / gain
        u = w + np.log(w) + (drive[on] / gain - 1.0 - w) * (1.0 - kept)
        out[on] = gain * _omega(u)
    return np.maximum(out, I_0)


def membrane_step(i_mem: np.ndarray, i_in: np.ndarray, i_leak: np.ndarray, i_gain: np.ndarray,
                  h: np.ndarray | float) -> np.ndarray:
    """``I_mem`` after ``h`` seconds of the DPI neuron (Chicca et al. 2014, the "adaptive
    exponential" neuron without its exponential feedback and adaptation):

    ``tau (1 + I_gain / I_mem) dI_mem/dt = I_inf - I_mem``, ``tau = C_mem U_T / (kappa I_leak)``,
    ``I_inf = (I_gain / I_leak) (I_in - I_leak)`` clipped at 0.

    The left side is the derivative of ``z = I_mem + I_gain ln I_mem``, so in ``u = z / I_gain =
    w + ln w`` (``w = I_mem / I_gain``) the neuron is a plain relaxation,
    ``tau du/dt = w_inf - w``, integrated by exponential Euler:
    ``u += (w_inf - w) (1 - exp(-h / tau))``. That is exact where the DPI is linear (``w >> 1``:
    ``u ~ w``, first-order relaxation) and where the input dominates (``w << w_inf``: ``u``
    grows linearly, through the exponential start after a reset as well), and stable for any
    ``h``; ``w`` is recovered from ``u`` by the Wright omega function. Floored at ``I_0``.
    """
    w = i_mem / i_gain
    w_inf = np.maximum((i_in - i_leak) / i_leak, 0.0)  # I_inf / I_gain
    relax = -np.expm1(-h * biases.KAPPA * i_leak / (biases.C_MEM * biases.U_T))
    u = w + np.log(w) + (w_inf - w) * relax
    return np.maximum(i_gain * _omega(u), I_0)


def _omega(u: np.ndarray) -> np.ndarray:
    """Wright omega ``w(u)``, the ``w > 0`` with ``w + ln w = u``: Newton in ``ln w`` from
    ``u`` (``u < 1``: ``w ~ e^u``) or ``ln(u - ln u)`` (large ``u``); four steps reach 2e-9
    relative (``scipy.special.wrightomega`` agrees), at a third of its cost."""
    v = np.where(u < 1.0, u, np.log(np.maximum(u - np.log(np.maximum(u, 1.0)), 1e-300)))
    for _ in range(4):
        e = np.exp(v)
        v -= (e + v - u) / (e + 1.0)
    return np.exp(v)


def dpi_rate(currents: Mapping[str, float], input_current: Any, *, gaba_current: float = 0.0,
             shunt_current: float = 0.0) -> np.ndarray:
    """Closed-form firing rate (Hz) of :func:`membrane_step`'s neuron under constant currents.

    From reset (``I_0``) to threshold the ODE integrates to
    ``t = tau [(1 + I_g/I_inf) ln((I_inf - I_0)/(I_inf - I_thr)) + (I_g/I_inf) ln(I_thr/I_0)]``,
    and the rate is ``1 / (t + t_ref)``; 0 where ``I_inf <= I_thr`` (below rheobase).
    ``currents`` as for :func:`fi_curve`.
    """
    leak, gain, thr, dc, t_ref = _neuron_constants(currents)
    i_in = np.asarray(input_current, dtype=np.float64) - gaba_current + dc
    i_leak = leak + shunt_current
    tau = biases.C_MEM * biases.U_T / (biases.KAPPA * i_leak)
    i_inf = gain / i_leak * (i_in - i_leak)
    above = i_inf > thr
    safe = np.where(above, i_inf, 2.0 * thr)
    t = tau * ((1 + gain / safe) * np.log((safe - I_0) / (safe - thr))
               + gain / safe * np.log(thr / I_0))
    return np.where(above, 1.0 / (t + t_ref), 0.0)


def _neuron_constants(currents: Mapping[str, float]) -> tuple[float, float, float, float, float]:
    missing = [n for n in (LEAK_BIAS, GAIN_BIAS, THRESHOLD_BIAS) if n not in currents]
    if missing:
        raise ValueError(f"neuron currents need {', '.join(missing)} (A)")
    t_ref = (biases.V_TH * biases.C_REF / float(currents[REFRACTORY_BIAS])
             if REFRACTORY_BIAS in currents else 0.0)
    return (float(currents[LEAK_BIAS]), float(currents[GAIN_BIAS]),
            float(currents[THRESHOLD_BIAS]), float(currents.get(DC_BIAS, 0.0)), t_ref)


def fi_curve(currents: Mapping[str, float], input_currents: Any, *, gaba_current: float = 0.0,
             shunt_current: float = 0.0, duration: float = 0.2, dt: float = DEFAULT_DT
             ) -> np.ndarray:
    """Simulated f-I curve (Hz) of one neuron of a core, by the simulator's own step functions.

    ``currents``: the core's neuron biases in A by name, ``SOIF_LEAK_N``, ``SOIF_GAIN_N``,
    ``SOIF_SPKTHR_P`` (required), ``SOIF_REFR_N`` (refractory; none if absent) and ``SOIF_DC_P``
    (e.g. ``core_biases(config)[(chip, core)].currents``). ``input_currents`` (A, any shape): a
    constant excitatory (AMPA) current per curve point; ``gaba_current`` is subtracted from it and
    ``shunt_current`` added to the leak, both constant, injected at the neuron as the synapses'
    outputs would be. The rate is the steady one, ``(spikes - 1) / (last - first spike time)``
    over ``duration`` s (``spikes / duration`` with fewer than two spikes).
    """
    leak, gain, thr, dc, t_ref = _neuron_constants(currents)
    i_in = np.asarray(input_currents, dtype=np.float64) - gaba_current + dc
    shape = i_in.shape
    i_in = i_in.reshape(-1)
    i_leak = np.full_like(i_in, leak + shunt_current)
    i_mem = np.full_like(i_in, I_0)
    timer = np.zeros_like(i_in)
    count = np.zeros_like(i_in)
    first = np.full_like(i_in, np.nan)
    last = np.full_like(i_in, np.nan)
    for step in range(int(round(duration / dt))):
        spikes, t_cross = _neuron_update(i_mem, timer, i_in, i_leak, gain, thr, t_ref, dt)
        if spikes.any():
            at = step * dt + t_cross[spikes]
            first[spikes] = np.where(np.isnan(first[spikes]), at, first[spikes])
            last[spikes] = at
            count[spikes] += 1
    steady = np.where(count >= 2, (count - 1) / np.where(count >= 2, last - first, 1.0), 0.0)
    return np.where(count >= 2, steady, count / duration).reshape(shape)


def _neuron_update(i_mem: np.ndarray, timer: np.ndarray, i_in: np.ndarray, i_leak: np.ndarray,
                   gain: Any, thr: Any, t_ref: Any, dt: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One ``dt`` of the neurons, in place: refractory timer, membrane, threshold, reset.

    A neuron still refractory for ``timer`` seconds integrates only the rest of the step,
    ``h = dt - timer``. A crossing is located within the step by interpolating ``u`` (see
    :func:`membrane_step`); the
    neuron then stays at ``I_0`` for ``t_ref`` from that instant (the part of ``t_ref`` left at
    the end of the step is carried in ``timer``), so rates do not depend on where spikes fall on
    the ``dt`` grid. Returns the spikes and their times within the step.
    """
    h = np.clip(dt - timer, 0.0, dt)
    timer -= dt - h
    old = i_mem.copy()
    i_mem[...] = np.where(h > 0, membrane_step(i_mem, i_in, i_leak, gain, h), i_mem)
    spikes = i_mem >= thr
    if not spikes.any():
        return spikes, np.zeros_like(i_mem)
    # u = w + ln w grows linearly in time while the input dominates: interpolate the crossing
    lo, hi, at = (_u(old, gain), _u(i_mem, gain), _u(np.broadcast_to(thr, i_mem.shape), gain))
    frac = np.clip(np.where(spikes, (at - lo) / np.where(hi > lo, hi - lo, 1.0), 1.0), 0.0, 1.0)
    t_cross = (dt - h) + frac * h
    ref = np.broadcast_to(t_ref, i_mem.shape)
    timer[spikes] = np.maximum(ref[spikes] - (dt - t_cross[spikes]), 0.0)
    i_mem[spikes] = I_0
    return spikes, t_cross


def _u(i_mem: np.ndarray, gain: Any) -> np.ndarray:
    w = i_mem / gain
    return w + np.log(w)


# --------------------------------------------------------------------------- bias currents
@dataclass(frozen=True)
class CoreBiases:
    """One core's bias currents (A) as the simulator uses them, and where each came from:
    ``"config"`` (its code in ``dynapse2.json``), ``"derived"`` or ``"dynapsim"`` (filled)."""

    chip: int
    core: int
    role: str
    currents: dict[str, float]
    source: dict[str, str]


def _dynapsim_currents() -> dict[str, float]:
    from .samna import default_parameters

    codes = {name: (c, f) for name, c, f in default_parameters()}
    return {name: biases.bias_current(name, *codes[name]) for name in _DYNAPSIM_NAMES}


def _realised(name: str, current: float) -> float:
    """The current the code nearest ``current`` realises (0 A: the smallest code)."""
    return biases.bias_code(name, max(float(current), 0.0)).realised


def core_biases(config: Mapping[str, Any], *, unset: str = "derived", source: str = "<config>",
                overrides: Mapping[str, Mapping[str, float]] | None = None
                ) -> dict[tuple[int, int], CoreBiases]:
    """Every used core's currents, keyed by (chip, core): the configuration's codes through
    ``biases.bias_current``, the biases it leaves unset filled by ``unset`` (module doc).

    Raises ``ConfigError`` (a ``ValueError``) naming the core and the field when a bias the
    simulation needs and ``compile.py`` writes is missing or malformed: ``SOIF_SPKTHR_P``,
    ``SOIF_DC_P``, ``SYAM_W0..3_P``, the gain of every dendrite the core's CAM entries use, and
    ``SOIF_LEAK_N`` of E and readout cores. ``overrides`` (``{role: {NAME: current}}``) replaces
    currents of every core of a role, for what-if studies (source ``"override"``).
    """
    if unset not in UNSET_POLICIES:
        raise ValueError(f"unset must be one of {UNSET_POLICIES}, got {unset!r}")
    graph = config.get("graph", {})
    kind_dendrites = dict(config["target"]["kind_dendrites"])
    weight_biases = list(config["target"]["weight_biases"])
    eps = DivisionSettings.parse(dict(graph.get("division", {})),
                                 f"{source}: graph.division").divisor_floor
    divided = {p["target"] for p in graph.get("projections", []) if p["kind"] == "div"}
    dendrites_into: dict[str, set[str]] = {}
    for p in graph.get("projections", []):
        dendrites_into.setdefault(p["target"], set()).add(kind_dendrites[p["kind"]])
    dynapsim = _dynapsim_currents() if unset == "dynapsim" else {}
    out: dict[tuple[int, int], CoreBiases] = {}
    for ci, chip in enumerate(config["chips"]):
        for ki, core in enumerate(chip["cores"]):
            where = f"chips[{ci}].cores[{ki}]"
            key = (int(chip["id"]), int(core["id"]))
            role = str(core.get("role", ""))
            names = sorted({s["population"] for s in core.get("populations", [])})
            label = f"{source}: core (chip {key[0]}, core {key[1]}) [{role}: {', '.join(names)}]"
            if role not in ("exc", "inh", "readout"):
                raise ConfigError(f"{label}: field '{where}.role' is {role!r}, not exc, inh or "
                                  "readout")
            codes = core.get("bias_codes")
            if not isinstance(codes, dict):
                raise ConfigError(f"{label}: field '{where}.bias_codes' is missing")
            used = set().union(*(dendrites_into.get(n, set()) for n in names))
            required = [THRESHOLD_BIAS, DC_BIAS, *weight_biases,
                        *(DENDRITE_GAIN_BIAS[d] for d in sorted(used))]
            if role != "inh":
                required.append(LEAK_BIAS)
            missing = [f"{where}.bias_codes.{n}" for n in required if n not in codes]
            if missing:
                raise ConfigError(f"{label}: field(s) {', '.join(missing)} missing: the "
                                  "simulation needs their (coarse, fine) codes")
            currents = {name: _code_current(label, f"{where}.bias_codes.{name}", name, code)
                        for name, code in sorted(codes.items())}
            origin = dict.fromkeys(currents, "config")
            if unset == "derived":
                divides = role == "exc" and any(n in divided for n in names)
                # such files were written in DynapSim's units (10 nA, 100 us pulses)
                derived = derived_currents(role, threshold=currents[THRESHOLD_BIAS],
                                           eps=eps if divides else None, policy=LINEAR_POLICY)
                filled = {n: _realised(n, c) for n, c in derived.items()}
            else:
                filled = dynapsim
            for name, value in filled.items():
                if name not in currents:
                    currents[name], origin[name] = value, unset
            for name, value in (overrides or {}).get(role, {}).items():
                currents[name], origin[name] = float(value), "override"
            out[key] = CoreBiases(key[0], key[1], role, currents, origin)
    return out


def _code_current(label: str, where: str, name: str, code: Any) -> float:
    try:
        coarse, fine = code["coarse"], code["fine"]
    except (KeyError, TypeError):
        raise ConfigError(f"{label}: field '{where}' has no coarse/fine code") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (coarse, fine)):
        raise ConfigError(f"{label}: field '{where}' coarse/fine must be integers, got "
                          f"({coarse!r}, {fine!r})")
    try:
        return biases.bias_current(name, coarse, fine)
    except ValueError as exc:
        raise ConfigError(f"{label}: field '{where}': {exc}") from None


# --------------------------------------------------------------------------- the network
@dataclass
class _Network:
    """The configuration as arrays. Neurons: every non-input population, in graph order. A
    *slot* is one DPI synapse, a (dendrite, neuron) pair that some CAM entry drives; the columns
    of the routing matrices are slots, and a matrix entry is the synapse's drive while the
    entry's pulse is open, ``(I_gain_d / I_tau_d) * I_w`` (A: the linear DPI's steady current).
    Entries of one delay (whole ``dt`` steps) share a matrix."""

    populations: dict[str, slice]
    dendrites: tuple[str, ...]
    leak: np.ndarray
    gain: np.ndarray
    threshold: np.ndarray
    dc: np.ndarray
    t_ref: np.ndarray
    slot_dendrite: np.ndarray        # (slots,) index into dendrites
    slot_neuron: np.ndarray          # (slots,)
    synapse_decay: np.ndarray        # (slots,): exp(-dt / tau_d)
    synapse_gain: np.ndarray         # (slots,): I_gain_d (A)
    input_groups: list[tuple[int, scipy.sparse.csr_matrix]]   # (delay steps, (channels, slots))
    neuron_groups: list[tuple[int, scipy.sparse.csr_matrix]]  # (delay steps, (n, slots))
    to_input: scipy.sparse.csr_matrix  # (n, slots): +1 excitatory, -1 subtractive
    to_leak: scipy.sparse.csr_matrix   # (n, slots): +1 shunting
    pulse_groups: list[tuple[np.ndarray, int, float]]  # (slots, whole steps, fraction)
    latency: float = 0.0               # s: the delays along the deepest path

    @property
    def size(self) -> int:
        return int(self.leak.size)

    @property
    def slots(self) -> int:
        return int(self.slot_neuron.size)

    @property
    def w_input(self) -> scipy.sparse.csr_matrix:
        """Every input CAM entry's drive, whatever its delay (channels, slots)."""
        return _summed(self.input_groups)

    @property
    def w_neurons(self) -> scipy.sparse.csr_matrix:
        return _summed(self.neuron_groups)


def network_arrays(net: _Network) -> dict[str, np.ndarray]:
    """A network as plain numpy arrays (``numpy.savez``; :func:`network_from_arrays` reads them
    back): the simulator's input without the configuration, the bias tables or rockpool, for a
    machine that has torch and numpy only (``benchmarks/analog_gpu.py``)."""
    out: dict[str, np.ndarray] = {
        "populations": np.array([f"{k}:{v.start}:{v.stop}" for k, v in net.populations.items()]),
        "dendrites": np.array(net.dendrites), "latency": np.array(net.latency)}
    for name in ("leak", "gain", "threshold", "dc", "t_ref", "slot_dendrite", "slot_neuron",
                 "synapse_decay", "synapse_gain"):
        out[name] = np.asarray(getattr(net, name))
    for which in ("input_groups", "neuron_groups"):
        groups = getattr(net, which)
        out[f"{which}/delays"] = np.array([k for k, _ in groups], dtype=np.int64)
        for i, (_, m) in enumerate(groups):
            _put_csr(out, f"{which}/{i}", m)
    _put_csr(out, "to_input", net.to_input)
    _put_csr(out, "to_leak", net.to_leak)
    out["pulse/members"] = np.concatenate([m for m, _, _ in net.pulse_groups])
    out["pulse/group"] = np.concatenate([np.full(len(m), i) for i, (m, _, _) in
                                         enumerate(net.pulse_groups)])
    out["pulse/whole"] = np.array([w for _, w, _ in net.pulse_groups], dtype=np.int64)
    out["pulse/frac"] = np.array([f for _, _, f in net.pulse_groups])
    return out


def network_from_arrays(arrays: Mapping[str, np.ndarray]) -> _Network:
    """:func:`network_arrays` read back (an ``np.load(..., allow_pickle=False)`` mapping)."""
    populations = {}
    for entry in arrays["populations"]:
        name, start, stop = str(entry).rsplit(":", 2)
        populations[name] = slice(int(start), int(stop))

    def groups(which: str) -> list[tuple[int, scipy.sparse.csr_matrix]]:
        return [(int(k), _get_csr(arrays, f"{which}/{i}"))
                for i, k in enumerate(arrays[f"{which}/delays"])]

    members, group = arrays["pulse/members"], arrays["pulse/group"]
    pulses = [(members[group == i], int(w), float(f))
              for i, (w, f) in enumerate(zip(arrays["pulse/whole"], arrays["pulse/frac"],
                                             strict=True))]
    return _Network(populations, tuple(str(d) for d in arrays["dendrites"]),
                    *(np.asarray(arrays[name]) for name in (
                        "leak", "gain", "threshold", "dc", "t_ref", "slot_dendrite",
                        "slot_neuron", "synapse_decay", "synapse_gain")),
                    groups("input_groups"), groups("neuron_groups"),
                    _get_csr(arrays, "to_input"), _get_csr(arrays, "to_leak"), pulses,
                    float(arrays["latency"]))


def _put_csr(out: dict[str, np.ndarray], key: str, m: scipy.sparse.spmatrix) -> None:
    m = scipy.sparse.csr_matrix(m)
    out[f"{key}/data"], out[f"{key}/indices"], out[f"{key}/indptr"] = m.data, m.indices, m.indptr
    out[f"{key}/shape"] = np.array(m.shape, dtype=np.int64)


def _get_csr(arrays: Mapping[str, np.ndarray], key: str) -> scipy.sparse.csr_matrix:
    shape = tuple(int(v) for v in arrays[f"{key}/shape"])
    return scipy.sparse.csr_matrix((arrays[f"{key}/data"], arrays[f"{key}/indices"],
                                    arrays[f"{key}/indptr"]), shape=shape)


def _summed(groups: list[tuple[int, scipy.sparse.csr_matrix]]) -> scipy.sparse.csr_matrix:
    total = groups[0][1].copy()
    for _, m in groups[1:]:
        total = total + m
    return total.tocsr()


class MismatchDraws:
    """Mismatch factors (module doc): log-normal, ``exp(s_core z_core + s_device z_device)``
    with one ``z_core`` per core and quantity (the core's shared bias generator and layout
    gradient) and one ``z_device`` per circuit; ``s_core^2 + s_device^2 = ln(1 + m^2)`` so that
    a factor's relative standard deviation is ``m`` and its median 1 (the nominal current: a
    Gaussian threshold-voltage offset is a log-normal subthreshold current, Pelgrom et al.
    1989). ``core_fraction`` is the share of the log-variance common to a core
    (``biases.MISMATCH``). Nothing is drawn for ``mismatch = 0``."""

    def __init__(self, seed: int, mismatch: float, core_fraction: float, n_cores: int,
                 affected: np.ndarray) -> None:
        self.rng = np.random.default_rng(seed) if mismatch > 0 else None
        log_var = math.log1p(mismatch * mismatch)
        self.s_core = math.sqrt(core_fraction * log_var)
        self.s_device = math.sqrt((1.0 - core_fraction) * log_var)
        self.n_cores, self.affected = n_cores, affected

    def __call__(self, core: np.ndarray, neuron: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Factors for circuits on cores ``core`` serving neurons ``neuron`` (same shape)."""
        if self.rng is None:
            return np.ones(core.shape)
        z_core = self.rng.standard_normal(self.n_cores)
        z_device = self.rng.standard_normal(core.shape)
        factors = np.exp(scale * (self.s_core * z_core[core] + self.s_device * z_device))
        return np.where(self.affected[neuron], factors, 1.0)


def delay_seconds(current: float | np.ndarray) -> np.ndarray:
    """Delay (s) of a CAM entry's delay class from its ``SYPD_DLY*`` current: the delay
    element is a pulse generator like the pulse extender, ``t = V_th C_delay / I``
    (``biases.C_DELAY``; an assumption, see docs/analog-model.md §1)."""
    return biases.V_TH * biases.C_DELAY / np.asarray(current, dtype=np.float64)


def cam_delay_classes(config: Mapping[str, Any], graph: EIGraph) -> dict[str, np.ndarray]:
    """Each sparse projection's delay class per synapse (its CAM entry's two delay flags), in
    the projection's synapse order; projections whose entries are all undelayed are left out.
    The sender of an entry is resolved as ``config_to_graph`` does: the tag an SRAM entry or an
    input channel sends to the entry's core."""
    cpc = int(config["target"].get("cores_per_chip", 4))
    sender: dict[tuple[int, int, int], tuple[str, int]] = {}
    delayed: dict[tuple[str, int, str, str, int], int] = {}
    for chip in config["chips"]:
        for core in chip["cores"]:
            for neuron in core["neurons"]:
                for entry in neuron.get("sram", []):
                    for bit in range(cpc):
                        if int(entry["core_mask"]) >> bit & 1:
                            sender[(int(entry["chip"]), bit, int(entry["tag"]))] = (
                                neuron["population"], int(neuron["index"]))
    for channel in config.get("input_channels", []):
        if channel.get("tag") is None:
            continue
        for dest in channel["destinations"]:
            for bit in range(cpc):
                if int(dest["core_mask"]) >> bit & 1:
                    sender[(int(dest["chip"]), bit, int(channel["tag"]))] = (
                        channel["population"], int(channel["channel"]))
    for chip in config["chips"]:
        for core in chip["cores"]:
            here = (int(chip["id"]), int(core["id"]))
            for neuron in core["neurons"]:
                for entry in neuron["cam"]:
                    if int(entry.get("delay", 0)):
                        src = sender.get((*here, int(entry["tag"])))
                        if src is not None:
                            delayed[(neuron["population"], int(neuron["index"]),
                                     str(entry["dendrite"]), *src)] = int(entry["delay"])
    if not delayed:
        return {}
    kind_dendrites = dict(config["target"]["kind_dendrites"])
    out: dict[str, np.ndarray] = {}
    for proj in graph.projections:
        dendrite = kind_dendrites[proj.kind]
        classes = np.array([delayed.get((proj.target, int(t), dendrite, proj.source, int(src)), 0)
                            for t, src in proj.indices])
        if classes.any():
            out[proj.name] = classes
    return out


def _build_network(config: Mapping[str, Any], graph: EIGraph,
                   cores: Mapping[tuple[int, int], CoreBiases], dt: float, mismatch: float,
                   seed: int, mismatched: Collection[str] | None = None) -> _Network:
    """Arrays of the network: nominal currents times mismatch factors (``MismatchDraws``), drawn
    in a fixed order: neuron leak, gain, threshold, DC, refractory; per slot synapse tau and gain;
    per CAM entry weight, pulse width and delay, in the graph's projection order.
    ``mismatched`` limits the factors to the neurons of those populations and the synapses onto
    them (the draws are the same, so the other neurons keep their nominal values)."""
    kind_dendrites = dict(config["target"]["kind_dendrites"])
    weight_biases = list(config["target"]["weight_biases"])
    delay_biases = list(config["target"].get("delay_biases", DELAY_BIASES))
    offsets: dict[str, int] = {}
    populations: dict[str, slice] = {}
    n = 0
    for pop in graph.populations:
        if pop.role != "input":
            offsets[pop.name] = n
            populations[pop.name] = slice(n, n + pop.size)
            n += pop.size
    dendrites = tuple(d for d in (*_EXCITATORY, *_SUBTRACTIVE, *_SHUNTING)
                      if any(kind_dendrites[p.kind] == d for p in graph.projections))
    keys = sorted(cores)
    core_of = np.full(n, -1, dtype=np.int64)
    scales = np.ones((len(keys), len(dendrites)))
    levels = np.zeros((len(keys), 1 << len(weight_biases)))
    realised = np.zeros_like(levels)
    docs = {(int(chip["id"]), int(core["id"])): core
            for chip in config["chips"] for core in chip["cores"]}
    for c, key in enumerate(keys):
        doc = docs[key]
        for s in doc["populations"]:
            start = offsets[s["population"]]
            core_of[start + int(s["start"]):start + int(s["stop"])] = c
        for d, dendrite in enumerate(dendrites):
            scales[c, d] = float(doc.get("dendrite_scales", {}).get(dendrite, 1.0))
        levels[c] = subset_sums(np.asarray(doc["base_weights"], dtype=np.float64))
        realised[c] = subset_sums(np.array([cores[key].currents[w] for w in weight_biases]))

    def per_core(name: str) -> np.ndarray:
        return np.array([cores[k].currents[name] for k in keys])[core_of]

    unknown = sorted(set(mismatched or ()) - set(populations))
    if unknown:
        raise ValueError(f"no simulated population(s) {unknown}; known: {sorted(populations)}")
    affected = np.ones(n, dtype=bool)
    if mismatched is not None:
        affected[:] = False
        for name in mismatched:
            affected[populations[name]] = True
    draw = MismatchDraws(seed, mismatch, biases.MISMATCH["core_fraction"], len(keys), affected)
    delay_classes = cam_delay_classes(config, graph)
    everyone = np.arange(n)

    leak = per_core(LEAK_BIAS) * draw(core_of, everyone)
    gain = per_core(GAIN_BIAS) * draw(core_of, everyone)
    threshold = per_core(THRESHOLD_BIAS) * draw(core_of, everyone)
    dc = per_core(DC_BIAS) * draw(core_of, everyone)
    t_ref = biases.V_TH * biases.C_REF / (per_core(REFRACTORY_BIAS) * draw(core_of, everyone))

    # the slots: (dendrite, neuron) pairs some projection drives, dendrite-major
    used = np.zeros((len(dendrites), n), dtype=bool)
    for proj in graph.projections:
        used[dendrites.index(kind_dendrites[proj.kind]),
             offsets[proj.target] + proj.indices[:, 0]] = True
    slot_dendrite, slot_neuron = np.nonzero(used)
    slot_of = np.full(used.shape, -1, dtype=np.int64)
    slot_of[slot_dendrite, slot_neuron] = np.arange(slot_neuron.size)
    slot_core = core_of[slot_neuron]
    tau_current = np.array([cores[keys[c]].currents[SYNAPSE_TAU_BIAS[dendrites[d]]]
                            for d, c in zip(slot_dendrite, slot_core, strict=True)])
    tau_current = tau_current * draw(slot_core, slot_neuron)
    syn_gain = np.array([cores[keys[c]].currents[DENDRITE_GAIN_BIAS[dendrites[d]]]
                         for d, c in zip(slot_dendrite, slot_core, strict=True)])
    syn_gain = syn_gain * draw(slot_core, slot_neuron)
    capacitance = np.array([biases.C_DENDRITE[dendrites[d]] for d in slot_dendrite])
    syn_tau = biases.U_T * capacitance / (biases.KAPPA * tau_current)
    ratio = syn_gain / tau_current  # I_gain_d / I_tau_d per slot

    input_pop = graph.input_settings.population
    entries: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {
        "input": [], "neurons": []}
    delayed_targets: set[str] = set()
    max_delay = 0.0
    for proj in graph.projections:
        d = dendrites.index(kind_dendrites[proj.kind])
        target = offsets[proj.target] + proj.indices[:, 0]
        c = core_of[target]
        candidates = scales[c, d][:, None] * levels[c]
        mask = np.abs(candidates - proj.weight[:, None]).argmin(axis=1)
        picked = candidates[np.arange(mask.size), mask]
        if np.any(np.abs(picked - proj.weight) > 1e-9 * np.maximum(np.abs(proj.weight), 1e-30)):
            raise ConfigError(f"projection {proj.name}: a weight is no dendrite scale times a "
                              "base-weight subset sum of its core")
        # each CAM entry's weight current and pulse width (the charge it delivers)
        i_w = realised[c, mask] * draw(c, target) * draw(c, target)
        # its delay class: 0 none, 1 precise (SYPD_DLY0), 2 mismatched (SYPD_DLY1), 3 (DLY2)
        delay_class = delay_classes.get(proj.name, np.zeros(mask.size, dtype=np.int64))
        delay = np.zeros(mask.size)
        for cls in (1, 2, 3):
            pick = np.flatnonzero(delay_class == cls)
            if pick.size == 0:
                continue
            name = delay_biases[cls - 1]
            nominal = delay_seconds(np.array([cores[keys[k]].currents[name] for k in c[pick]]))
            spread = biases.MISMATCH["precise_delay"] if cls == 1 else \
                biases.MISMATCH["mismatched_delay"]
            delay[pick] = nominal * draw(c[pick], target[pick], spread)
            delayed_targets.add(proj.target)
            max_delay = max(max_delay, float(nominal.max()))
        steps = np.rint(delay / dt).astype(np.int64)
        which = "input" if proj.source == input_pop else "neurons"
        source = proj.indices[:, 1] + (0 if which == "input" else offsets[proj.source])
        slot = slot_of[d, target]
        entries[which].append((source, slot, ratio[slot] * i_w, steps))
    n_input = graph.population(input_pop).size

    def groups(which: str, n_rows: int) -> list[tuple[int, scipy.sparse.csr_matrix]]:
        shape = (n_rows, slot_neuron.size)
        if not entries[which]:
            return [(0, scipy.sparse.csr_matrix(shape))]
        rows, cols, vals, steps = (np.concatenate(x) for x in zip(*entries[which], strict=True))
        return [(int(k), scipy.sparse.csr_matrix(
            (vals[steps == k], (rows[steps == k], cols[steps == k])), shape=shape))
            for k in np.unique(steps)]

    sign = np.array([1.0 if d in _EXCITATORY else -1.0 if d in _SUBTRACTIVE else 0.0
                     for d in dendrites])[slot_dendrite]
    shunt = np.array([d in _SHUNTING for d in dendrites])[slot_dendrite]
    cols = np.arange(slot_neuron.size)
    to_input = scipy.sparse.csr_matrix((sign[sign != 0], (slot_neuron[sign != 0],
                                                          cols[sign != 0])),
                                       shape=(n, slot_neuron.size))
    to_leak = scipy.sparse.csr_matrix((np.ones(int(shunt.sum())), (slot_neuron[shunt],
                                                                   cols[shunt])),
                                      shape=(n, slot_neuron.size))
    pulse = (biases.V_TH * biases.C_PULSE / per_core(PULSE_BIAS))[slot_neuron]
    pulse_groups: list[tuple[np.ndarray, int, float]] = []
    for width in np.unique(pulse):
        steps = width / dt
        whole = int(math.floor(steps + 1e-9))
        pulse_groups.append((np.flatnonzero(pulse == width), whole,
                             float(max(steps - whole, 0.0))))
    return _Network(populations, dendrites, leak, gain, threshold, dc, t_ref, slot_dendrite,
                    slot_neuron, np.exp(-dt / syn_tau), syn_gain,
                    groups("input", n_input), groups("neurons", n), to_input, to_leak,
                    pulse_groups, max_delay * len(delayed_targets))


# --------------------------------------------------------------------------- results
@dataclass
class AnalogResult:
    """Spike ``counts`` of the readout neurons (B, readout neurons), their membrane current
    ``membrane`` (A) at the end of the window (the tie-break), the mean firing rate ``rates``
    (Hz) of every neuron of every population over the window, averaged over the batch, and for
    sample 0 a ``raster``: per population (spike times in s, neuron indices)."""

    counts: np.ndarray
    membrane: np.ndarray
    rates: dict[str, np.ndarray]
    window: float
    raster: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    classes: int | None = None  # several readout neurons per class: graph.readout["classes"]

    def predictions(self) -> np.ndarray:
        """Classes (B,): the most readout spikes; among equal counts, the higher membrane."""
        return readout_decision(self.counts, self.membrane, self.classes)


@dataclass
class AnalogAccuracy:
    """Accuracy (percent) over mismatch trials: trial ``i`` draws its mismatch with seed
    ``seed + i``; ``std`` is the sample standard deviation (0 for one trial)."""

    mean: float
    std: float
    per_trial: list[float]
    mismatch: float
    trials: int
    seconds_per_trial: float = 0.0
    #: The same draws scored after the host-side readout calibration (when one was asked for).
    calibrated_per_trial: list[float] | None = None
    #: The same draws decided by a per-chip readout decoder fitted on the unlabelled calibration
    #: inputs to the model's own class totals (:func:`fit_readout_decoder`; when a teacher was
    #: given).
    decoded_per_trial: list[float] | None = None

    @property
    def decoded_mean(self) -> float | None:
        return None if self.decoded_per_trial is None else float(np.mean(self.decoded_per_trial))

    @property
    def decoded_std(self) -> float | None:
        values = self.decoded_per_trial
        return None if values is None else (float(np.std(values, ddof=1)) if len(values) > 1
                                            else 0.0)

    @property
    def calibrated_mean(self) -> float | None:
        return None if self.calibrated_per_trial is None else float(
            np.mean(self.calibrated_per_trial))

    @property
    def calibrated_std(self) -> float | None:
        values = self.calibrated_per_trial
        return None if values is None else (float(np.std(values, ddof=1)) if len(values) > 1
                                            else 0.0)


# --------------------------------------------------------------------------- the simulator
class AnalogSimulator:
    """A ``dynapse2.json`` configuration (as ``read_config`` returns it) prepared for
    continuous-time runs: one mismatch draw per instance (module doc).

    ``dt`` (s) defaults to ``DEFAULT_DT``; ``unset`` fills the biases the configuration does not
    hold (``"derived"`` or ``"dynapsim"``); ``batch_size`` bounds the samples simulated at once.
    What-if knobs: ``overrides`` (``{role: {BIAS: current}}``, see :func:`core_biases`) and
    ``mismatch_populations`` (mismatch only the neurons of these populations and the synapses
    onto them; the same draws as a full mismatch). ``integrator``: ``"piecewise"`` (default,
    ``analog_piecewise``: steps of ``step`` seconds, default 100 us, with exact spike and pulse
    times; its spike counts within 1% of the reference's), ``"fast"`` (``analog_fast``: the
    reference's ``dt`` steps, compiled; the same spikes), ``"reference"`` (``_simulate``, the
    equations as written in the module doc) or ``"torch"`` (``analog_torch``: the reference's
    steps as torch tensors on ``device``, ``"auto"``: a CUDA GPU where torch sees one, else the
    CPU; give it a large ``batch_size`` on a GPU). The compiled integrators fall back to the
    reference where numba is missing.
    """

    def __init__(self, config: Mapping[str, Any], *, mismatch: float = 0.0, seed: int = 0,
                 dt: float | None = None, unset: str = "derived", batch_size: int = 128,
                 source: str = "<config>",
                 overrides: Mapping[str, Mapping[str, float]] | None = None,
                 mismatch_populations: Collection[str] | None = None,
                 synapse: str = "dpi", integrator: str = "piecewise",
                 step: float | None = None, device: str = "auto") -> None:
        self.dt = DEFAULT_DT if dt is None else float(dt)
        self.step = max(analog_piecewise.DEFAULT_STEP, self.dt) if step is None else float(step)
        if synapse not in SYNAPSE_MODELS:
            raise ValueError(f"synapse must be one of {SYNAPSE_MODELS}, got {synapse!r}")
        if integrator not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
        self.synapse, self.integrator = synapse, integrator
        if integrator == "piecewise":
            analog_piecewise.check_step(self.step, self.dt)
        self.device = analog_torch.resolve_device(device) if integrator == "torch" else None
        if not 0 < self.dt <= biases.DT_SECONDS / 10:
            raise ValueError(f"dt must be in (0, {biases.DT_SECONDS / 10}] s (a tenth of a model "
                             f"step at least), got {dt}")
        if not (math.isfinite(mismatch) and mismatch >= 0):
            raise ValueError(f"mismatch is a relative standard deviation >= 0, got {mismatch}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.mismatch, self.seed, self.unset = float(mismatch), int(seed), unset
        self.config = config
        self.batch_size = int(batch_size)
        self.graph = config_to_graph(config, source=source)
        self.host = Host(self.graph)  # the host's input encoding, bit for bit
        if self.host.readout_mode != "spiking" or self.host.encoding == "direct":
            raise ValueError(f"{source}: the chip takes spikes and returns spikes: the graph "
                             f"needs spike input and a spiking readout (it has "
                             f"{self.host.encoding!r} input, a {self.host.readout_mode!r} "
                             "readout)")
        self.cores = core_biases(config, unset=unset, source=source, overrides=overrides)
        self.network = _build_network(config, self.graph, self.cores, self.dt, self.mismatch,
                                      self.seed, mismatch_populations)
        self.readout = self.host.readout
        # the tail covers the delay classes too (network.latency, < 1 step on an export's path)
        self.window = (self.graph.T + TAIL_STEPS) * biases.DT_SECONDS

    def run(self, x: Any, *, raster: bool = False) -> AnalogResult:
        """Run a batch of raw inputs ``(B, *in_shape)`` or ``(B, T, *in_shape)`` (as the float
        executor takes them); ``raster`` records sample 0's spikes."""
        return run_draws([self], x, raster=raster)[0]

    def _simulate_part(self, net: _Network, part: np.ndarray, record: bool
                       ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """One batch ``(T, B, channels)`` of host events through ``net`` by this simulator's
        integrator."""
        if self.integrator == "torch":
            return analog_torch.simulate(net, part, self.dt, self.window, record,
                                         synapse=self.synapse, device=self.device)
        if self.integrator == "reference" or not analog_fast.available():
            return _simulate(net, part, self.dt, self.window, record, synapse=self.synapse)
        if self.integrator == "fast":
            return analog_fast.simulate(net, part, self.dt, self.window, record,
                                        synapse=self.synapse)
        return analog_piecewise.simulate(net, part, self.dt, self.window, record,
                                         synapse=self.synapse, step=self.step)

    def predict(self, x: Any) -> np.ndarray:
        return self.run(x).predictions()


def stack_networks(nets: Sequence[_Network]) -> _Network:
    """Several networks of one configuration (its mismatch draws) as one, block-diagonal: draw
    ``d``'s neurons are ``d n .. (d + 1) n - 1`` and its synapses likewise, the host's input events
    reach every draw, and no draw's spikes reach another's. Each neuron keeps its own draw's
    currents, synapses and inputs, so it fires as in its draw alone: the draws become a batch
    dimension of one simulation (``populations`` are draw 0's)."""
    if len(nets) == 1:
        return nets[0]
    first = nets[0]
    if any(net.populations != first.populations or net.dendrites != first.dendrites
           for net in nets):
        raise ValueError("stack_networks: the networks are not draws of one configuration")
    sizes, slots = [net.size for net in nets], [net.slots for net in nets]
    n_offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    s_offsets = np.concatenate([[0], np.cumsum(slots)[:-1]])
    channels = first.input_groups[0][1].shape[0]  # every draw's input groups share their rows

    def by_delay(which: str, stack) -> list[tuple[int, scipy.sparse.csr_matrix]]:
        delays = sorted({k for net in nets for k, _ in getattr(net, which)})
        out = []
        for k in delays:
            blocks = []
            for net in nets:
                found = [m for d, m in getattr(net, which) if d == k]
                rows = channels if which == "input_groups" else net.size
                blocks.append(found[0] if found else scipy.sparse.csr_matrix((rows, net.slots)))
            out.append((k, stack(blocks).tocsr()))
        return out

    pulses = [(members + offset, whole, frac) for net, offset in zip(nets, s_offsets, strict=True)
              for members, whole, frac in net.pulse_groups]
    return _Network(
        first.populations, first.dendrites,
        *(np.concatenate([getattr(net, f) for net in nets])
          for f in ("leak", "gain", "threshold", "dc", "t_ref")),
        np.concatenate([net.slot_dendrite for net in nets]),
        np.concatenate([net.slot_neuron + offset
                        for net, offset in zip(nets, n_offsets, strict=True)]),
        np.concatenate([net.synapse_decay for net in nets]),
        np.concatenate([net.synapse_gain for net in nets]),
        by_delay("input_groups", scipy.sparse.hstack),
        by_delay("neuron_groups", scipy.sparse.block_diag),
        scipy.sparse.block_diag([net.to_input for net in nets]).tocsr(),
        scipy.sparse.block_diag([net.to_leak for net in nets]).tocsr(),
        pulses, max(net.latency for net in nets))


def run_draws(sims: Sequence[AnalogSimulator], x: Any, *, raster: bool = False
              ) -> list[AnalogResult]:
    """``[sim.run(x) for sim in sims]`` in one simulation: several simulators of one
    configuration (mismatch draws, the same integrator and steps) run the same inputs as one
    block-diagonal network (:func:`stack_networks`), each draw's results split out again. The
    draws are then a batch dimension, which is what the torch backend on a GPU wants (one
    launch per operation for every draw); on a CPU the work is the same as one after the other.
    ``raster`` records sample 0's spikes of every draw."""
    first = sims[0]
    for sim in sims[1:]:
        if (sim.config is not first.config and sim.config != first.config) or (
                sim.dt, sim.step, sim.window, sim.synapse, sim.integrator, sim.device,
                sim.batch_size) != (first.dt, first.step, first.window, first.synapse,
                                    first.integrator, first.device, first.batch_size):
            raise ValueError("run_draws: the simulators differ in more than their mismatch draw")
    spikes_in = first.host.spikes(x)
    spikes_in = np.broadcast_to(spikes_in, (first.graph.T, *spikes_in.shape[1:]))
    spikes_in = spikes_in.reshape(first.graph.T, spikes_in.shape[1], -1)
    batch = spikes_in.shape[1]
    net = stack_networks([sim.network for sim in sims])
    n = first.network.size
    totals = np.zeros(net.size)
    counts, membranes = [], []
    recorded = None
    for start in range(0, batch, first.batch_size):
        part = spikes_in[:, start:start + first.batch_size]
        c, m, r = first._simulate_part(net, part, raster and start == 0)
        totals += c.sum(axis=0)
        counts.append(c)
        membranes.append(m)
        recorded = recorded if r is None else r
    all_counts, all_membranes = np.concatenate(counts), np.concatenate(membranes)
    results = []
    for d in range(len(sims)):
        offset = d * n
        pops = {name: slice(s.start + offset, s.stop + offset)
                for name, s in first.network.populations.items()}
        readout = pops[first.readout]
        rates = {name: totals[s] / (batch * first.window) for name, s in pops.items()}
        rast = None
        if recorded is not None:
            times, neurons = recorded
            rast = {}
            for name, s in pops.items():
                keep = (neurons >= s.start) & (neurons < s.stop)
                rast[name] = (times[keep], neurons[keep] - s.start)
        results.append(AnalogResult(all_counts[:, readout].astype(np.int64),
                                    all_membranes[:, readout], rates, first.window, rast,
                                    first.host.classes))
    return results


def _simulate(net: _Network, spikes_in: np.ndarray, dt: float, window: float, record: bool,
              probe: dict[str, np.ndarray] | None = None, synapse: str = "dpi"
              ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """One batch ``(T, B, channels)`` of host events through the network: spike counts and final
    membrane currents ``(B, n)``, and sample 0's (times, neurons) when ``record``."""
    steps_model, batch = spikes_in.shape[:2]
    slots = net.slots
    arrivals = {int(round(t * biases.DT_SECONDS / dt)): t for t in range(steps_model)}
    ring = 1 + max(k for k, _ in (*net.input_groups, *net.neuron_groups))
    incoming = np.zeros((ring, batch, slots))
    history = 2 + max((whole for _, whole, _ in net.pulse_groups), default=0)
    pulses = np.zeros((history, batch, slots))
    drive = np.zeros((batch, slots))
    rest = I_0 if synapse == "dpi" else 0.0
    i_syn = np.full((batch, slots), rest)
    i_mem = np.full((batch, net.size), I_0)
    timer = np.zeros((batch, net.size))
    counts = np.zeros((batch, net.size))
    to_input = net.to_input
    to_leak = net.to_leak
    shunting = net.to_leak.nnz > 0
    whole_net = len(net.pulse_groups) == 1
    spikes = np.zeros((batch, net.size), dtype=bool)
    times: list[np.ndarray] = []
    neurons: list[np.ndarray] = []
    for k in range(int(round(window / dt))):
        if k in arrivals:
            events = spikes_in[arrivals[k]]
            if events.any():
                sparse_events = scipy.sparse.csr_matrix(events)
                for delay, matrix in net.input_groups:
                    incoming[(k + delay) % ring] += (sparse_events @ matrix).toarray()
        if spikes.any():
            fired = scipy.sparse.csr_matrix(spikes, dtype=np.float64)
            for delay, matrix in net.neuron_groups:
                incoming[(k + delay) % ring] += (fired @ matrix).toarray()
        slot = k % history
        arrived = incoming[k % ring]
        pulses[slot] = arrived
        drive += arrived
        arrived[...] = 0.0
        # a pulse of `whole + frac` steps: it closes (1 - frac) after `whole` steps, the rest
        # one step later
        for members, whole, frac in net.pulse_groups:
            ending = pulses[(k - whole) % history]
            late = pulses[(k - whole - 1) % history]
            if whole_net:
                drive -= (1.0 - frac) * ending + frac * late
            else:
                drive[:, members] -= ((1.0 - frac) * ending[:, members]
                                      + frac * late[:, members])
        if synapse == "dpi":
            i_syn = dpi_synapse_step(i_syn, drive, net.synapse_gain, net.synapse_decay)
        else:
            i_syn = synapse_step(i_syn, drive, net.synapse_decay)
        excess = i_syn - rest  # the resting DPI's dark current is no input
        if probe is not None:
            probe["charge"] = probe.get("charge", 0.0) + excess * dt
        i_in = net.dc + (to_input @ excess.T).T
        i_leak = net.leak + (to_leak @ excess.T).T if shunting else net.leak
        spikes, t_cross = _neuron_update(i_mem, timer, i_in, i_leak, net.gain, net.threshold,
                                         net.t_ref, dt)
        counts += spikes
        if record and spikes[0].any():
            fired_0 = np.flatnonzero(spikes[0])
            neurons.append(fired_0)
            times.append(k * dt + t_cross[0, fired_0])
    recorded = None
    if record:
        recorded = (np.concatenate(times) if times else np.zeros(0),
                    np.concatenate(neurons) if neurons else np.zeros(0, dtype=np.int64))
    return counts, i_mem, recorded


# --------------------------------------------------------------------------- accuracy
def readout_calibration(sim: AnalogSimulator, x_unlabelled: Any, reference: np.ndarray
                        ) -> np.ndarray:
    """Per-class factors the host applies to this chip's readout spike counts: the nominal
    chip's mean count over unlabelled inputs (``reference``) over this chip's. Mismatch of the
    readout neurons' gain and threshold scales each class's count, which decides the argmax;
    one pass of unlabelled data measures it (a class that never spikes keeps factor 1)."""
    return calibration_factors(sim.run(x_unlabelled).counts, reference)


def calibration_factors(counts: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """:func:`readout_calibration`'s factors from this chip's readout ``counts`` on the
    unlabelled inputs ``(N, neurons)``: ``reference`` over their mean (1 where none spiked)."""
    measured = np.asarray(counts).mean(axis=0)
    return np.where(measured > 0, np.asarray(reference) / np.maximum(measured, 1e-12), 1.0)


#: Ridge penalty of the readout decoder (on raw spike counts): measured on the digits and
#: Fashion-MNIST exports, 1-10 give the same accuracy within 0.4 points, 100 loses ~0.6.
DECODER_RIDGE = 10.0


@dataclass(frozen=True)
class ReadoutDecoder:
    """A host-side linear decoder of one chip's readout: ``scores = [counts, 1] @ weights``,
    ``weights`` ``(readout neurons + 1, classes)``; the class is the highest score."""

    weights: np.ndarray

    def scores(self, counts: np.ndarray) -> np.ndarray:
        counts = np.asarray(counts, dtype=np.float64)
        return np.hstack([counts, np.ones((len(counts), 1))]) @ self.weights

    def predict(self, counts: np.ndarray) -> np.ndarray:
        return self.scores(counts).argmax(axis=1)


def fit_readout_decoder(counts: np.ndarray, teacher: np.ndarray,
                        ridge: float = DECODER_RIDGE) -> ReadoutDecoder:
    """Fit one chip's readout decoder without labels: ridge regression of the model's class
    totals ``teacher`` ``(N, classes)`` (the integer simulator's, or the float model's, on the
    same unlabelled inputs) on the chip's readout counts ``counts`` ``(N, readout neurons)``.

    The per-neuron readout calibration (:func:`readout_calibration`) corrects each readout
    neuron's gain; the decoder also undoes what mismatch and the analog dynamics do to the mix
    of readout neurons that answer an input (a class read partly by another class's neurons),
    which gains cannot. It uses the deployed model's outputs, never labels: what a host has
    for a deployed chip."""
    counts = np.asarray(counts, dtype=np.float64)
    teacher = np.asarray(teacher, dtype=np.float64)
    if counts.ndim != 2 or teacher.ndim != 2 or len(counts) != len(teacher) or not len(counts):
        raise ValueError(f"fit_readout_decoder: counts {counts.shape} and teacher "
                         f"{teacher.shape} must be (N, neurons) and (N, classes), N >= 1")
    features = np.hstack([counts, np.ones((len(counts), 1))])
    gram = features.T @ features + ridge * np.eye(features.shape[1])
    return ReadoutDecoder(np.linalg.solve(gram, features.T @ teacher))


def accuracy_trials(config: Mapping[str, Any], x: Any, y: Any, *, mismatch: float, trials: int,
                    seed: int = 0, batch_size: int = 128, progress: bool = False,
                    dt: float | None = None, unset: str = "derived",
                    mismatch_populations: Collection[str] | None = None,
                    calibration: Any = None, synapse: str = "dpi",
                    teacher: Any = None,
                    simulator_options: Mapping[str, Any] | None = None) -> AnalogAccuracy:
    """Top-1 accuracy (percent) of the configuration over ``trials`` mismatch draws (trial ``i``:
    seed ``seed + i``); ``progress`` prints one line per trial to stderr. ``dt``, ``unset`` and
    ``mismatch_populations`` as for :class:`AnalogSimulator`. ``calibration``: unlabelled inputs
    for a host-side :func:`readout_calibration` of every draw, scored as well
    (``calibrated_per_trial``); with ``teacher``, the model's class totals on those inputs
    ``(N, classes)``, each draw is also decided by its :func:`fit_readout_decoder`
    (``decoded_per_trial``). ``simulator_options``: more keyword arguments of every
    :class:`AnalogSimulator` (``integrator``, ``device``, ``step``); with the torch integrator
    every draw runs in one simulation (:func:`run_draws`)."""
    options = dict(simulator_options or {})
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    labels = np.asarray(y).reshape(-1)
    if len(labels) != len(x) or len(labels) == 0:
        raise ValueError(f"accuracy_trials: {len(x)} inputs and {len(labels)} labels")
    per_trial: list[float] = []
    start = time.perf_counter()
    calibrate = calibration is not None and len(calibration) > 0
    calibrated: list[float] = []
    decoded: list[float] = []
    decode = calibrate and teacher is not None
    if decode and len(teacher) != len(calibration):
        raise ValueError(f"accuracy_trials: {len(calibration)} calibration inputs and "
                         f"{len(teacher)} teacher rows")
    if calibrate:
        reference = AnalogSimulator(config, dt=dt, unset=unset, batch_size=batch_size,
                                    synapse=synapse, **options
                                    ).run(calibration).counts.mean(axis=0)
    def draw(i: int) -> AnalogSimulator:
        return AnalogSimulator(config, mismatch=mismatch, seed=seed + i, dt=dt, unset=unset,
                               batch_size=batch_size, mismatch_populations=mismatch_populations,
                               synapse=synapse, **options)

    stacked: list[AnalogResult] = []
    stacked_cal: list[AnalogResult] = []
    if options.get("integrator") == "torch" and trials > 1:
        # every draw in one simulation (run_draws): the draws a batch dimension on the device
        sims = [draw(i) for i in range(trials)]
        stacked = run_draws(sims, x)
        stacked_cal = run_draws(sims, calibration) if calibrate else []
    for i in range(trials):
        sim = None if stacked else draw(i)
        result = stacked[i] if stacked else sim.run(x)
        per_trial.append(100.0 * float(np.mean(result.predictions() == labels)))
        line = f"accuracy {per_trial[-1]:.2f}%"
        if calibrate:
            chip = stacked_cal[i].counts if stacked else sim.run(calibration).counts
            factors = calibration_factors(chip, reference)
            predicted = readout_decision(result.counts * factors, result.membrane,
                                         result.classes)
            calibrated.append(100.0 * float(np.mean(predicted == labels)))
            line += f", {calibrated[-1]:.2f}% with the readout calibrated"
            if decode:
                decoder = fit_readout_decoder(chip, teacher)
                decoded.append(100.0 * float(np.mean(decoder.predict(result.counts) == labels)))
                line += f", {decoded[-1]:.2f}% decoded"
        if progress:
            print(f"mismatch {100 * mismatch:g}%: trial {i + 1}/{trials} (seed {seed + i}): "
                  f"{line}", file=sys.stderr, flush=True)
    elapsed = (time.perf_counter() - start) / trials
    std = float(np.std(per_trial, ddof=1)) if trials > 1 else 0.0
    return AnalogAccuracy(float(np.mean(per_trial)), std, per_trial, float(mismatch), trials,
                          elapsed, calibrated if calibrate else None, decoded if decode else None)
