"""What DYNAP-SE2 computes, as differentiable torch functions: the training-side chip model.

The discrete E-I model (``functional.py``) is what the float executor and the integer simulator
compute; the analog chip (``targets/dynapse2/analog.py``, docs/analog-model.md) differs in ways
that cost accuracy (issue 12): inhibition arrives after the interneurons have integrated and
spiked, an E neuron resets hard to the dark current and stays refractory, reaching threshold from
reset costs a fixed charge that includes the DPI's exponential start, SHUNT adds to the leak
(divisive below threshold, closer to subtractive on rates), and every current is mismatched.
This module runs a network of E-I layers the way the analog model does, in ``substeps`` per
model step, with every operation differentiable (surrogate spikes, straight-through counts), so
that training can see those effects. Parameters are passed in (:class:`NeuronConstants`,
:class:`ChipConstants`); nothing here imports a target: ``train/chip_faithful.py`` reads them
from a compiled configuration.

Units are the model's: a current 1.0 is ``U`` (``WEIGHT_UNIT_CURRENT``, 10 nA), a time 1.0 is
one model step ``DT`` (1 ms), so a charge 1.0 is ``U DT``. Per neuron, with ``w = I_mem /
I_gain`` and ``u = w + ln w`` (analog.membrane_step: ``tau (1 + I_gain/I_mem) dI_mem/dt = I_inf -
I_mem`` is ``k0 du/dt = i_in - i_leak (1 + w)`` with ``k0 = C_mem U_T / (kappa U DT)``):

* synapse (one DPI per dendrite, linear regime, ``tau_syn`` steps): a spike of weight ``q``
  (its charge) adds ``q`` to the dendrite's pending charge, of which ``1 - exp(-h / tau_syn)``
  is delivered in each substep of length ``h`` (exact for an impulse through the filter);
* membrane: exponential Euler in ``u`` as the analog model integrates it, ``u += (w_inf - w)
  (1 - exp(-h i_leak / k0))``, ``w_inf = relu(i_in - i_leak) / i_leak``; ``i_in = ampa - gaba +
  dc``; ``i_leak = leak (1 + shunt / eps)`` (the compiler codes SHUNT in units of ``leak /
  eps``); floored at ``u0 = ln(I_0 / I_gain)``;
* spike at ``u_thr = w_thr + ln w_thr`` (``w_thr = I_thr / I_gain``): the charge from reset to
  threshold is ``k0 (u_thr - u0)``, for the digits E neurons 0.155 against the model's 0.05;
  ``hard`` neurons (E) reset to ``u0`` and are held there for ``refractory`` steps; ``count``
  neurons (interneurons, readout; refractory ~10 us) keep the charge above threshold (a soft
  reset in ``u``, which is charge) and may fire several times in a substep;
* routing: spikes of substep ``k`` reach their targets' synapses in substep ``k + 1 + delay``
  (``delay`` per projection kind, in substeps: the CAM entries' delay classes); the host's input
  of model step ``t`` arrives at substep ``t * substeps``.

Mismatch (:func:`lognormal_factors`): each factor is ``exp(sigma_core z_core + sigma_device
z_device)``, one ``z_core`` per core shared by its devices (shared bias generators) and one
``z_device`` per circuit, drawn per call (per batch in training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .functional import spike_fn

__all__ = ["ChipConstants", "NeuronConstants", "ChipLayer", "LayerMismatch", "ChipRun",
           "lognormal_factors", "draw_mismatch", "omega", "neuron_substep", "run_chip",
           "readout_scores", "NEURON_FIELDS"]

#: The per-neuron currents that mismatch scales (analog.py's order: leak, gain, threshold, DC,
#: refractory current).
NEURON_FIELDS = ("leak", "gain", "threshold", "dc", "refractory")


@dataclass(frozen=True)
class NeuronConstants:
    """One population's circuit constants in model units (module doc), per neuron ``(n,)``:
    ``leak`` ``I_tau / U``, ``gain`` ``I_gain / U``, ``threshold`` ``I_thr / U``, ``dc``
    ``I_dc / U``, ``refractory`` ``t_ref / DT``; ``reset`` is ``hard`` (E neurons) or ``count``
    (interneurons and the readout); ``core`` the index of each neuron's core (mismatch)."""

    leak: torch.Tensor
    gain: torch.Tensor
    threshold: torch.Tensor
    dc: torch.Tensor
    refractory: torch.Tensor
    core: torch.Tensor
    reset: str = "hard"

    @property
    def size(self) -> int:
        return int(self.leak.numel())


@dataclass(frozen=True)
class ChipConstants:
    """Whole-chip constants: ``k0`` (charge per unit of ``u``), ``i0`` (dark current / U),
    ``eps`` (the divisor floor SHUNT is coded against), ``tau_syn`` (steps; one value or one per
    dendrite), ``substeps`` per model step, ``tail`` steps counted after the input
    (analog.TAIL_STEPS) and ``delay``: extra substeps before a spike's charge starts to arrive,
    per path: ``exc`` (AMPA onto E and readout neurons: the export's delay class and half the
    pulse), ``inh_in`` (AMPA onto interneurons), ``sub`` (the interneurons' GABA and SHUNT)."""

    k0: float
    i0: float
    eps: float
    tau_syn: float | dict[str, float] = 1.0
    substeps: int = 10
    tail: int = 2
    delay: dict[str, int] = field(default_factory=dict)

    def tau(self, dendrite: str) -> float:
        """The synapse time constant (steps) of ``ampa``, ``gaba`` or ``shunt``."""
        if isinstance(self.tau_syn, dict):
            return float(self.tau_syn.get(dendrite, self.tau_syn.get("ampa", 1.0)))
        return float(self.tau_syn)


@dataclass
class ChipLayer:
    """One E-I layer's synapses in charge per spike (model units), as the chip holds them
    (quantized, g_E folded): ``w_exc`` (n_E, d) AMPA, ``w_inh_in`` (n_I, d) AMPA onto the
    interneurons, ``w_sub`` (n_E, n_I) GABA, ``w_div`` (n_E, n_I) SHUNT or None (readout)."""

    w_exc: torch.Tensor
    w_inh_in: torch.Tensor
    w_sub: torch.Tensor
    w_div: torch.Tensor | None
    exc: NeuronConstants
    inh: NeuronConstants


@dataclass
class LayerMismatch:
    """Factors of one layer's circuits: ``exc`` / ``inh`` per neuron field ``(n,)``, ``syn``
    per dendrite's charge (gain over time-constant current) ``(n,)`` and ``cam`` per synapse
    (weight current times pulse width), shaped as the weights."""

    exc: dict[str, torch.Tensor]
    inh: dict[str, torch.Tensor]
    syn: dict[str, torch.Tensor]
    cam: dict[str, torch.Tensor]


def lognormal_factors(core: torch.Tensor, shape: tuple[int, ...], sigma_core: float,
                      sigma_device: float, generator: torch.Generator | None = None,
                      ) -> torch.Tensor:
    """Factors ``exp(sigma_core z_core[core] + sigma_device z)`` of ``shape`` (last dimension:
    neurons of ``core``'s cores; leading ones: devices of each neuron), median 1."""
    n_cores = int(core.max().item()) + 1 if core.numel() else 1
    z_core = torch.randn(n_cores, generator=generator, dtype=torch.float64)[core]
    z = torch.randn(shape, generator=generator, dtype=torch.float64)
    # neurons are the first dimension of every shape below
    view = (-1,) + (1,) * (len(shape) - 1)
    return torch.exp(sigma_core * z_core.view(view) + sigma_device * z).float()


def draw_mismatch(layers: list[ChipLayer], sigma_device: float, sigma_core: float = 0.0,
                  generator: torch.Generator | None = None) -> list[LayerMismatch]:
    """One chip: a :class:`LayerMismatch` per layer (all ones when both sigmas are 0)."""
    out = []
    for layer in layers:
        def neurons(c: NeuronConstants) -> dict[str, torch.Tensor]:
            return {name: lognormal_factors(c.core, (c.size,), sigma_core, sigma_device,
                                            generator) for name in NEURON_FIELDS}

        def per(c: NeuronConstants, like: torch.Tensor) -> torch.Tensor:
            return lognormal_factors(c.core, tuple(like.shape), 0.0, sigma_device, generator)

        syn = {k: lognormal_factors(layer.exc.core, (layer.exc.size,), sigma_core,
                                    math.sqrt(2) * sigma_device, generator)
               for k in ("exc", "sub", "div")}
        syn["inh"] = lognormal_factors(layer.inh.core, (layer.inh.size,), sigma_core,
                                       math.sqrt(2) * sigma_device, generator)
        # weight current and pulse width: two independent factors per CAM entry
        cam = {"exc": per(layer.exc, layer.w_exc) * per(layer.exc, layer.w_exc),
               "inh": per(layer.inh, layer.w_inh_in) * per(layer.inh, layer.w_inh_in),
               "sub": per(layer.exc, layer.w_sub) * per(layer.exc, layer.w_sub)}
        if layer.w_div is not None:
            cam["div"] = per(layer.exc, layer.w_div) * per(layer.exc, layer.w_div)
        out.append(LayerMismatch(neurons(layer.exc), neurons(layer.inh), syn, cam))
    return out


def omega(u: torch.Tensor) -> torch.Tensor:
    """Wright omega ``w(u)`` (``w + ln w = u``), Newton in ``ln w`` as analog._omega does."""
    v = torch.where(u < 1.0, u, torch.log((u - torch.log(u.clamp(min=1.0))).clamp(min=1e-30)))
    for _ in range(4):
        e = torch.exp(v)
        v = v - (e + v - u) / (e + 1.0)
    return torch.exp(v)


@dataclass
class _Neurons:
    """A population's constants with one chip's mismatch applied, as used every substep."""

    u0: torch.Tensor
    u_thr: torch.Tensor
    leak: torch.Tensor
    dc: torch.Tensor
    refractory: torch.Tensor
    reset: str


def _prepare(c: NeuronConstants, f: dict[str, torch.Tensor] | None, i0: float) -> _Neurons:
    f = f or {}

    def get(name: str) -> torch.Tensor:
        value = getattr(c, name)
        return value * f[name] if name in f else value

    gain, threshold = get("gain"), get("threshold")
    w_thr = threshold / gain
    # the refractory current sets t_ref = V_th C_ref / I_ref: its factor divides the period
    refractory = c.refractory / f["refractory"] if "refractory" in f else c.refractory
    return _Neurons(torch.log(i0 / gain), w_thr + torch.log(w_thr), get("leak"), get("dc"),
                    refractory, c.reset)


def neuron_substep(u: torch.Tensor, timer: torch.Tensor, i_in: torch.Tensor,
                   i_leak: torch.Tensor, p: _Neurons, h: float, k0: float, alpha: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One substep of a population: ``(spikes, u, timer)`` (module doc). ``spikes`` is a
    surrogate 0/1 for ``hard`` neurons and a straight-through count for ``count`` ones."""
    w = omega(u)
    w_inf = torch.relu(i_in - i_leak) / i_leak
    relax = -torch.expm1(-h * i_leak / k0)
    free = timer <= 0
    u_new = torch.maximum(u + (w_inf - w) * relax, p.u0)
    u = torch.where(free, u_new, p.u0.expand_as(u))
    timer = torch.clamp(timer - h, min=0.0)
    span = p.u_thr - p.u0
    if p.reset == "hard":
        s = spike_fn((u - p.u_thr) / span, alpha)
        # the surrogate is evaluated every substep while the discrete model evaluates it once a
        # step: scaled by h, a step's substeps together carry one step's surrogate gradient
        s = s.detach() + h * (s - s.detach())
        fired = s.detach() > 0
        u = torch.where(fired, p.u0.expand_as(u), u)
        timer = torch.where(fired, p.refractory.expand_as(timer), timer)
        return s, u, timer
    excess = (u - p.u0) / span
    n = excess + (torch.floor(excess) - excess).detach()  # floor, straight-through
    # not detached: the charge a count takes leaves the membrane, so d(total count)/d(charge)
    # is 1 / threshold charge however many substeps follow
    u = u - n * span
    return n, u, timer


@dataclass
class ChipRun:
    """Spike counts per population over the window, ``(B, n)`` each (``exc``/``inh`` of every
    layer, in layer order), and the last layer's final ``u`` relative to its threshold span
    (the membrane tie-break, in [0, 1))."""

    counts: list[dict[str, torch.Tensor]]
    readout_fraction: torch.Tensor


def run_chip(spikes_in: torch.Tensor, layers: list[ChipLayer], chip: ChipConstants,
             mismatch: list[LayerMismatch] | None = None, *, alpha: float = 4.0) -> ChipRun:
    """Run input spikes ``(T, B, d)`` through the layers for ``T + tail`` model steps."""
    steps, batch = spikes_in.shape[0], spikes_in.shape[1]
    S = int(chip.substeps)
    h = 1.0 / S
    keep = {d: math.exp(-h / chip.tau(d)) for d in ("ampa", "gaba", "shunt")}
    lag = {k: 1 + int(chip.delay.get(k, 0)) for k in ("exc", "inh_in", "sub")}
    mm = mismatch or [None] * len(layers)
    dev, dtype = spikes_in.device, spikes_in.dtype
    # arrivals[k]: (layer, pending charge name, charge (B, n)) that start to arrive in substep k
    arrivals: dict[int, list[tuple[int, str, torch.Tensor]]] = {}

    def send(k: int, index: int, name: str, charge: torch.Tensor) -> None:
        arrivals.setdefault(k, []).append((index, name, charge))

    state = []
    for layer, m in zip(layers, mm, strict=True):
        exc = _prepare(layer.exc, m.exc if m else None, chip.i0)
        inh = _prepare(layer.inh, m.inh if m else None, chip.i0)
        w = {"exc": layer.w_exc, "inh": layer.w_inh_in, "sub": layer.w_sub, "div": layer.w_div}
        if m is not None:
            w = {k: None if v is None else v * m.cam[k] * m.syn[k][:, None]
                 for k, v in w.items()}
        n_e, n_i = layer.exc.size, layer.inh.size
        state.append({
            "exc": exc, "inh": inh, "w": w,
            "u_exc": exc.u0.expand(batch, -1).clone(), "u_inh": inh.u0.expand(batch, -1).clone(),
            "t_exc": torch.zeros(batch, n_e, device=dev, dtype=dtype),
            "t_inh": torch.zeros(batch, n_i, device=dev, dtype=dtype),
            "pending": {"ampa": torch.zeros(batch, n_e, device=dev, dtype=dtype),
                        "gaba": torch.zeros(batch, n_e, device=dev, dtype=dtype),
                        "shunt": torch.zeros(batch, n_e, device=dev, dtype=dtype),
                        "inh": torch.zeros(batch, n_i, device=dev, dtype=dtype)},
            "n_exc": torch.zeros(batch, n_e, device=dev, dtype=dtype),
            "n_inh": torch.zeros(batch, n_i, device=dev, dtype=dtype)})

    def fan_out(k: int, index: int, spikes: torch.Tensor) -> None:
        """A population's spikes of substep ``k`` (or the host's) into layer ``index``."""
        w = state[index]["w"]
        send(k + lag["exc"], index, "ampa", F.linear(spikes, w["exc"]))
        send(k + lag["inh_in"], index, "inh", F.linear(spikes, w["inh"]))

    for k in range((steps + chip.tail) * S):
        if k % S == 0 and k // S < steps:
            fan_out(k - 1, 0, spikes_in[k // S])  # host events arrive at the step's start
        for index, name, charge in arrivals.pop(k, []):
            pending = state[index]["pending"]
            pending[name] = pending[name] + charge
        for index, st in enumerate(state):
            # each synapse delivers (1 - keep) of its pending charge in this substep
            p = st["pending"]
            delivered = {}
            for name in p:
                a = keep["ampa" if name == "inh" else name]
                delivered[name] = p[name] * (1 - a)
                p[name] = p[name] * a
            inh, exc = st["inh"], st["exc"]
            r, st["u_inh"], st["t_inh"] = neuron_substep(
                st["u_inh"], st["t_inh"], delivered["inh"] / h + inh.dc,
                inh.leak.expand_as(delivered["inh"]), inh, h, chip.k0, alpha)
            st["n_inh"] = st["n_inh"] + r
            w = st["w"]
            send(k + lag["sub"], index, "gaba", F.linear(r, w["sub"]))
            if w["div"] is not None:
                send(k + lag["sub"], index, "shunt", F.linear(r, w["div"]))
            i_leak = exc.leak * (1.0 + delivered["shunt"] / (h * chip.eps))
            s, st["u_exc"], st["t_exc"] = neuron_substep(
                st["u_exc"], st["t_exc"], (delivered["ampa"] - delivered["gaba"]) / h + exc.dc,
                i_leak, exc, h, chip.k0, alpha)
            st["n_exc"] = st["n_exc"] + s
            if index + 1 < len(state):
                fan_out(k, index + 1, s)
    last = state[-1]
    fraction = ((last["u_exc"] - last["exc"].u0) / (last["exc"].u_thr - last["exc"].u0))
    return ChipRun([{"exc": st["n_exc"], "inh": st["n_inh"]} for st in state],
                   fraction.clamp(0.0, 1.0))


def readout_scores(run: ChipRun) -> torch.Tensor:
    """The readout's counts plus its membrane fraction: what the host decides on (count, ties
    by membrane), as one differentiable number per class."""
    return run.counts[-1]["exc"] + run.readout_fraction
