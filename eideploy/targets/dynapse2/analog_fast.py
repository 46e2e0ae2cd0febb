"""The analog simulator's compiled integrator: the equations, steps and event bookkeeping of
``analog._simulate`` (the reference integrator), one sample per thread, compiled by numba.

The reference advances whole arrays with numpy, some sixty passes over ``(batch, synapses)``
arrays per 10 us step, and recovers every DPI's ``w`` from ``u = w + ln w`` from scratch each step
(a logarithm, two more for the start and five exponentials). Here each sample's whole window runs
in one compiled loop (samples in parallel threads), its state in registers and cache, and:

* both DPI circuits keep ``v = ln w`` next to ``w = I / I_gain``, so ``u`` is ``w + v``, and the
  new ``v`` is found by Halley's method on ``e^v + v = u`` from the old one (its first iteration
  needs only the state's ``w``); ``e^v`` near the old ``v`` is ``w e^(v - v_old)``, a short series
  for the small changes of a 10 us step. Where the residual ``|e^v + v - u|`` is still above
  ``RESIDUAL`` (a neuron that jumps decades in one step) the step is solved again as the reference
  solves it (Newton in ``ln w`` from its start, to convergence);
* an undriven synapse decays exactly, ``v += -dt / tau``, ``w *= exp(-dt / tau)``;
* a neuron at the dark current with no net input (``I_in <= I_leak``) stays there: the
  reference's step ends on the floor too;
* a spike's targets are the rows of the routing matrices (CSR), added to the delay ring.

The events, pulses, delays, refractory timers, crossing interpolation and the floor at the dark
current are the reference's, step for step; the two agree on every spike count up to crossings
that fall within rounding of a threshold (``tests/test_analog_fast.py``; ``benchmarks/analog.py``
measures both on the same network and inputs).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse

# numba is a declared dependency; without it the simulator uses the reference integrator
from ..._jit import njit as _njit
from ..._jit import numba, set_threads, torch_threads_kept
from . import biases
from .compile import I_0  # the dark current: every DPI's floor

__all__ = ["simulate", "available", "RESIDUAL", "set_threads"]

#: Largest residual ``|e^v + v - u|`` (relative to ``1 + |u|``) a solve leaves (~1e-11 relative
#: in ``w``; the reference's omega reaches 2e-9); above it the step is solved from scratch.
RESIDUAL = 1e-11
#: The membrane's rate per ampere of leak: ``1 / tau = RATE_K I_leak`` (``tau = C U_T / (kappa
#: I_leak)``).
RATE_K = biases.KAPPA / (biases.C_MEM * biases.U_T)
#: Below this drive (A) a synapse is undriven: ``analog._DRIVE_FLOOR``.
_DRIVE_FLOOR = 1e-3 * I_0

if numba is not None:
    from numba import prange

#: IEEE arithmetic but for fused multiply-adds; division by zero gives inf (numpy's model)
#: rather than an exception check in every loop.
_JIT_OPTIONS = {"error_model": "numpy", "fastmath": {"contract"}}


def njit(**options):
    """``eideploy._jit.njit`` with this module's IEEE options (:data:`_JIT_OPTIONS`)."""
    return _njit(**_JIT_OPTIONS, **options)


def available() -> bool:
    """Whether the compiled integrator can run (numba imports)."""
    return numba is not None


if numba is not None:

    @njit(inline="always")
    def _series_exp(d: float) -> float:
        """``e^d - 1`` for ``|d| <= 0.05``, degree 8 by Horner: the error is
        below ``d^9 / 9! ~ 5e-18``, under double rounding."""
        return d * (1.0 + d * (0.5 + d * (1.0 / 6.0 + d * (1.0 / 24.0 + d * (
            1.0 / 120.0 + d * (1.0 / 720.0 + d * (1.0 / 5040.0 + d * (1.0 / 40320.0))))))))

    @njit(inline="always")
    def _exp_near(v: float, v_old: float, w_old: float) -> float:
        """``e^v`` from ``e^v_old = w_old``: the series of ``e^d``, ``d = v - v_old``, where
        ``|d| <= 0.05`` (:func:`_series_exp`), else ``math.exp``."""
        d = v - v_old
        if -0.05 <= d <= 0.05:
            return w_old + w_old * _series_exp(d)
        return math.exp(v)

    @njit()
    def _omega_scalar(u: float) -> tuple[float, float]:
        """``(v, w)``, ``w + ln w = u``: the reference's ``analog._omega`` (Newton in ``ln w``
        from ``u`` or ``ln(u - ln u)``), iterated to convergence."""
        if u < 1.0:
            v = u
        else:
            v = math.log(max(u - math.log(max(u, 1.0)), 1e-300))
        for _ in range(60):
            e = math.exp(v)
            step = (e + v - u) / (e + 1.0)
            v -= step
            if abs(step) <= 1e-16 * (1.0 + abs(v)):
                break
        return v, math.exp(v)

    @njit(inline="always")
    def _solve(u: float, v: float, w: float, residual: float) -> tuple[float, float]:
        """``(v, w)`` with ``e^v + v = u`` by Halley's method from the previous ``(v, w)``."""
        # Halley on f = e^v + v - u (f' = e^v + 1, f'' = e^v): cubic, so a step's change of a
        # few percent is solved to rounding in two iterations; the first uses the state's w
        f = w + v - u
        d = w + 1.0
        v1 = v - 2.0 * f * d / (2.0 * d * d - f * w)
        e = _exp_near(v1, v, w)
        f = e + v1 - u
        d = e + 1.0
        v2 = v1 - 2.0 * f * d / (2.0 * d * d - f * e)
        w2 = _exp_near(v2, v1, e)
        if not abs(w2 + v2 - u) <= residual * (1.0 + abs(u)):
            return _omega_scalar(u)
        return v2, w2

    @njit(inline="always")
    def _neuron_input(j, n_ptr, n_slot, n_sign, excess, dc, leak):
        """Neuron ``j``'s input and leak currents from its slots' excess currents (``+1`` AMPA
        adds to the input, ``-1`` GABA subtracts, ``0`` SHUNT adds to the leak), and whether a
        SHUNT slot is among them."""
        i_in = dc[j]
        i_leak = leak[j]
        shunted = False
        for e in range(n_ptr[j], n_ptr[j + 1]):
            sg = n_sign[e]
            if sg > 0:
                i_in += excess[n_slot[e]]
            elif sg < 0:
                i_in -= excess[n_slot[e]]
            else:
                i_leak += excess[n_slot[e]]
                shunted = True
        return i_in, i_leak, shunted

    @njit(inline="always")
    def _sizes(spikes_in, s_decay, dc, in_delay, nr_delay):
        """A kernel's sizes: batch, input channels, slots, neurons, input and neuron routing
        groups."""
        return (spikes_in.shape[1], spikes_in.shape[2], s_decay.shape[0], dc.shape[0],
                in_delay.shape[0], nr_delay.shape[0])

    @njit(inline="always")
    def _refractory(timer, j, step):
        """The part of a step of ``step`` seconds that neuron ``j`` integrates: what follows
        its refractory timer, which runs down by the rest."""
        h = step - timer[j]
        if h < 0.0:
            h = 0.0
        elif h > step:
            h = step
        timer[j] -= step - h
        return h

    @njit(parallel=True)
    def _kernel(spikes_in, arrival_step, in_delay, in_ptr, in_idx, in_val,
                nr_delay, nr_ptr, nr_idx, nr_val, ring, history,
                s_decay, s_log_decay, s_open, s_gain, s_inv_gain, s_v0, s_w0, s_whole, s_frac,
                dpi, rest,
                n_ptr, n_slot, n_sign, dc, leak, gain, n_v0, n_w0, w_thr, u_thr, t_ref,
                relax_full, rate_k, dt, steps, record_sample, rec_times, rec_neurons, rec_count,
                counts, membrane, residual, drive_floor):
        batch, channels, slots, n, n_in_groups, n_nr_groups = _sizes(
            spikes_in, s_decay, dc, in_delay, nr_delay)
        for b in prange(batch):
            incoming = np.zeros((ring, slots))
            pulses = np.zeros((history, slots))
            drive = np.zeros(slots)
            sv = s_v0.copy()
            sw = s_w0.copy()
            isyn = np.full(slots, rest)
            excess = np.zeros(slots)
            nv = n_v0.copy()
            nw = n_w0.copy()
            timer = np.zeros(n)
            fired = np.zeros(n, dtype=np.bool_)
            any_fired = False
            t_model = 0
            for k in range(steps):
                # host events of model step t arrive at their step
                if t_model < arrival_step.shape[0] and arrival_step[t_model] == k:
                    for c in range(channels):
                        if spikes_in[t_model, b, c]:
                            for g in range(n_in_groups):
                                row = g * channels + c
                                buf = (k + in_delay[g]) % ring
                                for e in range(in_ptr[row], in_ptr[row + 1]):
                                    incoming[buf, in_idx[e]] += in_val[e]
                    t_model += 1
                # the previous step's spikes reach their targets
                if any_fired:
                    for j in range(n):
                        if fired[j]:
                            for g in range(n_nr_groups):
                                row = g * n + j
                                buf = (k + nr_delay[g]) % ring
                                for e in range(nr_ptr[row], nr_ptr[row + 1]):
                                    incoming[buf, nr_idx[e]] += nr_val[e]
                r = k % ring
                hs = k % history
                for s in range(slots):
                    a = incoming[r, s]
                    pulses[hs, s] = a
                    incoming[r, s] = 0.0
                    # a pulse of whole + frac steps closes (1 - frac) after whole steps, the
                    # rest one step later (whole < history: no modulo needed)
                    h0 = hs - s_whole[s]
                    if h0 < 0:
                        h0 += history
                    h1 = h0 - 1
                    if h1 < 0:
                        h1 += history
                    frac = s_frac[s]
                    dr = drive[s] + a
                    dr -= (1.0 - frac) * pulses[h0, s] + frac * pulses[h1, s]
                    drive[s] = dr
                    if dpi:
                        if dr > drive_floor:
                            u = sw[s] + sv[s] + (dr * s_inv_gain[s] - 1.0 - sw[s]) * s_open[s]
                            v, w = _solve(u, sv[s], sw[s], residual)
                        else:
                            v = sv[s] + s_log_decay[s]
                            w = sw[s] * s_decay[s]
                        if v < s_v0[s]:
                            v = s_v0[s]
                            w = s_w0[s]
                        sv[s] = v
                        sw[s] = w
                        excess[s] = w * s_gain[s] - rest
                    else:
                        isyn[s] = dr + (isyn[s] - dr) * s_decay[s]
                        excess[s] = isyn[s]
                any_fired = False
                for j in range(n):
                    fired[j] = False
                    i_in, i_leak, shunted = _neuron_input(j, n_ptr, n_slot, n_sign, excess, dc,
                                                          leak)
                    h = _refractory(timer, j, dt)
                    if h <= 0.0:
                        continue
                    v_old = nv[j]
                    w_old = nw[j]
                    w_inf = (i_in - i_leak) / i_leak
                    if w_inf <= 0.0:
                        if v_old <= n_v0[j]:
                            continue  # at the dark current with no net input: stays there
                        w_inf = 0.0
                    if shunted or h < dt:
                        relax = -math.expm1(-h * rate_k * i_leak)
                    else:
                        relax = relax_full[j]
                    u_old = w_old + v_old
                    u = u_old + (w_inf - w_old) * relax
                    v, w = _solve(u, v_old, w_old, residual)
                    if v < n_v0[j]:
                        v = n_v0[j]
                        w = n_w0[j]
                    if w >= w_thr[j]:
                        # the crossing, interpolated in u within the part of the step integrated
                        span = u - u_old
                        fr = (u_thr[j] - u_old) / span if span > 0 else 1.0
                        if fr < 0.0:
                            fr = 0.0
                        elif fr > 1.0:
                            fr = 1.0
                        t_cross = (dt - h) + fr * h
                        rest_ref = t_ref[j] - (dt - t_cross)
                        timer[j] = rest_ref if rest_ref > 0.0 else 0.0
                        v = n_v0[j]
                        w = n_w0[j]
                        fired[j] = True
                        any_fired = True
                        counts[b, j] += 1
                        if b == record_sample:
                            m = rec_count[0]
                            if m < rec_times.shape[0]:
                                rec_times[m] = k * dt + t_cross
                                rec_neurons[m] = j
                                rec_count[0] = m + 1
                    nv[j] = v
                    nw[j] = w
            for j in range(n):
                membrane[b, j] = nw[j] * gain[j]


def _stack_routing(groups: list[tuple[int, scipy.sparse.csr_matrix]], rows: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The delay groups' CSR matrices stacked row-wise, ``(group, row)`` order."""
    matrices = []
    for _, m in groups:
        m = m.tocsr().copy()
        m.sum_duplicates()
        m.sort_indices()
        matrices.append(m)
    stacked = scipy.sparse.vstack(matrices, format="csr") if matrices else \
        scipy.sparse.csr_matrix((0, 0))
    delays = np.array([int(k) for k, _ in groups], dtype=np.int64)
    assert stacked.shape[0] == rows * len(groups)
    return (delays, stacked.indptr.astype(np.int64), stacked.indices.astype(np.int64),
            stacked.data.astype(np.float64))


def network_basics(net: Any, channels: int) -> tuple:
    """What both compiled integrators take from a network whatever their step: the stacked
    routing of the host's channels and of the neurons (delays in ``dt`` steps), per neuron its
    slots and how each enters (``n_ptr``, the slots in neuron order, their signs: +1 input,
    -1 subtracted, 0 the leak), and the neurons' gain, leak and threshold in ``w`` units."""
    n = net.size
    sign_of = np.asarray(net.to_input.sum(axis=0)).reshape(-1)
    order = np.argsort(net.slot_neuron, kind="stable")
    gain = np.asarray(net.gain, dtype=np.float64)
    return (*_stack_routing(net.input_groups, channels), *_stack_routing(net.neuron_groups, n),
            np.cumsum(np.bincount(net.slot_neuron + 1, minlength=n + 1)).astype(np.int64),
            order.astype(np.int64), sign_of[order].astype(np.int64), gain,
            np.asarray(net.leak, dtype=np.float64),
            np.asarray(net.threshold, dtype=np.float64) / gain)


def _network_arrays(net: Any, channels: int, dt: float, synapse: str) -> tuple:
    """The kernel's arguments that depend on the network alone (routing, slots, neurons), built
    once per network and step and kept on it: a simulator runs its batches on one network."""
    key = (channels, float(dt), synapse)
    cache = net.__dict__.setdefault("_compiled_arrays", {})
    if key in cache:
        return cache[key]
    slots = net.slots
    (in_delay, in_ptr, in_idx, in_val, nr_delay, nr_ptr, nr_idx, nr_val, n_ptr, n_slot, n_sign,
     gain, leak, w_thr) = network_basics(net, channels)
    ring = 1 + int(max(in_delay.max(initial=0), nr_delay.max(initial=0)))
    whole = np.zeros(slots, dtype=np.int64)
    frac = np.zeros(slots)
    for members, w, f in net.pulse_groups:
        whole[members] = w
        frac[members] = f
    history = 2 + int(whole.max(initial=0))
    s_gain = np.asarray(net.synapse_gain, dtype=np.float64)
    s_decay = np.asarray(net.synapse_decay, dtype=np.float64)
    dpi = synapse == "dpi"
    cache[key] = (
        in_delay, in_ptr, in_idx, in_val, nr_delay, nr_ptr, nr_idx, nr_val, ring, history,
        s_decay, np.log(s_decay), 1.0 - s_decay, s_gain, 1.0 / s_gain, np.log(I_0 / s_gain),
        I_0 / s_gain, whole, frac, dpi, I_0 if dpi else 0.0,
        n_ptr, n_slot, n_sign, np.asarray(net.dc, dtype=np.float64), leak, gain,
        np.log(I_0 / gain), I_0 / gain, w_thr, w_thr + np.log(w_thr),
        np.asarray(net.t_ref, dtype=np.float64), -np.expm1(-dt * RATE_K * leak), RATE_K)
    return cache[key]


def simulate(net: Any, spikes_in: np.ndarray, dt: float, window: float, record: bool,
             synapse: str = "dpi"
             ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """One batch ``(T, B, channels)`` of host events through ``net`` (an ``analog._Network``):
    spike counts and final membrane currents ``(B, n)``, and sample 0's (times, neurons) when
    ``record``; the contract of ``analog._simulate``."""
    if numba is None:
        raise ImportError("the compiled analog integrator needs numba (pip install numba)")
    steps_model, batch, channels = spikes_in.shape
    n = net.size
    steps = int(round(window / dt))
    arrival = np.array([int(round(t * biases.DT_SECONDS / dt)) for t in range(steps_model)],
                       dtype=np.int64)
    counts = np.zeros((batch, n), dtype=np.int64)
    membrane = np.zeros((batch, n))
    cap = steps * n if record else 1
    rec_times = np.zeros(cap)
    rec_neurons = np.zeros(cap, dtype=np.int64)
    rec_count = np.zeros(1, dtype=np.int64)
    with torch_threads_kept():
        _kernel(np.ascontiguousarray(spikes_in, dtype=np.bool_), arrival,
                *_network_arrays(net, channels, dt, synapse),
                float(dt), steps, 0 if record else -1, rec_times, rec_neurons, rec_count,
                counts, membrane, RESIDUAL, _DRIVE_FLOOR)
    recorded = None
    if record:
        m = int(rec_count[0])
        recorded = (rec_times[:m].copy(), rec_neurons[:m].copy())
    return counts.astype(np.float64), membrane, recorded
