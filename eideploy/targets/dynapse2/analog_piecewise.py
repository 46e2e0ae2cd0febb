"""The analog simulator's piecewise integrator (the default): the circuits of ``analog`` (module
doc) on a coarse step (``DEFAULT_STEP`` = 100 us, ten times the reference's ``dt``), exact where
the reference's step is what limits it.

The reference integrator (``analog._simulate``) and its compiled copy (``analog_fast``) hold every
input constant over a 10 us step, fire a neuron at most once per step and deliver a spike to its
targets at the start of the next step. That step cannot grow: at 20 us the interneurons, whose
refractory period is 10 us, lose the part of a step after a spike and the spike counts move by
2-3% (docs/analog-model.md §5). Here, on a step ``h``:

* **events at their times.** A spike is sent at its crossing time, arrives ``delay`` later and
  opens its pulse for exactly its width: the drive a synapse sees in a step is the pulse's open
  fraction of that step (a ring of drive changes, four entries per event, in place of the
  reference's pulse history). A spike that would arrive within the step that fired it (no delay)
  arrives at the next step's start, with the drive it missed added to that step: its charge and
  closing time hold;
* **the neuron in closed form.** Under a constant input, the DPI neuron ``tau du/dt = w_inf - w``
  (``u = w + ln w``, ``analog.membrane_step``) reaches ``w`` from ``w_0`` after
  ``tau [ln(w / w_0) / c + (1 + 1 / c) ln((c - w_0) / (c - w))]``, ``c = w_inf``: the time of
  each threshold crossing, and so every spike of a step (several where a neuron fires faster
  than the step), its refractory period and what is left of the step after it;
* **the synapse's mean over the step.** A neuron's input over a step is its synapses' mean
  current over the step, exact for a linear relaxation (``I(t) = c + (I_0 - c) e^(-t / tau)``)
  and found from the step's start and end state, rather than the end state alone;
* **both DPI circuits by exponential Euler at the local rate** (:func:`_dpi_step`): exact where
  ``w << 1`` and where ``w >> 1``, and solved exactly from the closed form where ``w`` passes 1
  within a step (a synapse opening from rest, a neuron leaving the dark current).

``benchmarks/analog.py`` measures it against the reference at the reference's step on the same
network and inputs, and ``tests/test_analog_piecewise.py`` holds it to the reference's spike
counts (within 1% per population) on the digits model with and without mismatch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..._jit import torch_threads_kept
from . import analog_fast, biases
from .analog_fast import _DRIVE_FLOOR, RATE_K, RESIDUAL
from .compile import I_0

__all__ = ["simulate", "check_step", "DEFAULT_STEP"]

#: The coarse step (s): a tenth of a model step, a sixth of a pulse, the fastest synapse's time
#: constant. Every population's spike count within 0.5% of the reference's on the digits and
#: Fashion-MNIST exports (docs/analog-model.md §5); 500 us is off by more.
DEFAULT_STEP = 1e-4
#: Above this ``w = I / I_gain`` (at a step's start and its target) a DPI circuit is in its linear
#: regime (its rate within 2% of ``1 / tau``) and steps in ``w`` alone (:func:`_linear_step`).
LINEAR = 50.0
#: The most spikes one neuron fires in one step (a refractory period of ``step / 64``).
MAX_PER_STEP = 64

if analog_fast.numba is not None:
    from numba import prange

    njit = analog_fast.njit
    _near = analog_fast._solve
    _neuron_input = analog_fast._neuron_input
    _refractory = analog_fast._refractory
    _sizes = analog_fast._sizes

    @njit(inline="always")
    def _solve(u, v, w, residual):
        """``(v, w)``, ``e^v + v = u``. A coarse step moves ``v`` far (a neuron leaving the dark
        current climbs decades in one): where Newton's first step from the previous ``v`` is
        short, Halley's method from there (``analog_fast._solve``); else Halley's method from
        the asymptotic start, ``u - e^u`` below 1/2 and ``ln(u - ln u)`` above, to rounding in
        two or three iterations."""
        first = (u - w - v) / (w + 1.0)
        if -0.04 <= first <= 0.04:
            return _near(u, v, w, residual)
        if u < 0.5:
            x = u - math.exp(u)
        else:
            x = math.log(u - math.log(u))
        for _ in range(8):
            e = math.exp(x)
            f = e + x - u
            if abs(f) <= residual * (1.0 + abs(u)):
                return x, e
            d = e + 1.0
            x -= 2.0 * f * d / (2.0 * d * d - f * e)
        return analog_fast._omega_scalar(u)

    @njit(inline="always")
    def _dpi_step(c, v0, w0, h_tau, residual):
        """The DPI ``tau du/dt = c - w`` (``u = w + ln w``, ``w = I / I_gain``) over ``h``
        (``h_tau = h / tau``) from ``(v0, w0)`` under a constant drive ``c``.

        By exponential Euler at the local rate: ``c - w`` decays at ``lambda = w / ((1 + w)
        tau)`` (``dw/du = w / (1 + w)``), so ``u`` moves by ``(c - w0) (1 - e^(-lambda h)) /
        (lambda tau)``: the reference's step where ``w >> 1`` (``lambda = 1 / tau``) and forward
        Euler, exact, where ``w << 1`` (``u = ln w`` climbs at ``c / tau``). Where the rate
        changes within the step (``w`` passes 1: a synapse opening from rest, a neuron leaving
        the dark current) it is solved exactly instead: :func:`_dpi_exact`."""
        x = h_tau * w0 / (1.0 + w0)
        if x > 1e-6:
            move = -math.expm1(-x) / x * h_tau
        else:
            move = (1.0 - 0.5 * x) * h_tau
        v, w = _solve(w0 + v0 + (c - w0) * move, v0, w0, residual)
        if abs(w / (1.0 + w) - w0 / (1.0 + w0)) * h_tau > 0.05:
            return _dpi_exact(c, v0, w0, h_tau, v)
        return v, w

    @njit()
    def _dpi_exact(c, v0, w0, h_tau, guess):
        """``(v, w)`` of :func:`_dpi_step` from the exact solution under constant ``c``,
        ``h / tau = ln(w / w0) / c + (1 + 1 / c) ln((c - w0) / (c - w))``: Newton's method in
        ``v = ln w`` (the derivative is ``(1 + w) / (c - w)``) inside the bracket from ``v0``
        to ``ln c``, bisecting where a step leaves it."""
        if abs(c) < 1e-9 or abs(c - w0) <= 1e-12 * (1.0 + abs(c)):
            return guess, math.exp(guess)
        if c > w0:
            lo, hi = v0, math.log(c) if c > 0.0 else v0 + 50.0
        else:
            lo, hi = (math.log(c) if c > 0.0 else v0 - 800.0), v0
        v = guess
        if not lo < v < hi:
            v = 0.5 * (lo + hi)
        a = 1.0 + 1.0 / c
        l0 = math.log(abs(c - w0))
        rising = c > w0
        for _ in range(40):
            w = math.exp(v)
            gap = c - w
            if gap == 0.0 or (gap > 0.0) != rising:
                hi = v if rising else hi
                lo = lo if rising else v
                v = 0.5 * (lo + hi)
                continue
            g = (v - v0) / c - a * (math.log(abs(gap)) - l0) - h_tau
            # g rises with v while rising (and falls while falling): shrink the bracket
            if (g > 0.0) == rising:
                hi = v
            else:
                lo = v
            nv = v - g * gap / (1.0 + w)
            if not lo < nv < hi:
                nv = 0.5 * (lo + hi)
            if abs(nv - v) <= 1e-13 * (1.0 + abs(v)):
                v = nv
                break
            v = nv
        return v, math.exp(v)

    @njit(inline="always")
    def _linear_step(c, w0, h_tau, decay):
        """``w`` after :func:`_dpi_step` where ``w`` and ``c`` are above ``LINEAR``: ``c - w``
        decays at ``w / ((1 + w) tau)``, within 2% of ``1 / tau``, taken at the step's start and
        at its mean (Heun). ``decay = e^-h_tau``; the rest of each exponential,
        ``e^(h_tau / (1 + w))``, is a short series. No logarithm (``ln w`` is left to be found
        where needed)."""
        x0 = h_tau / (1.0 + w0)
        w1 = c + (w0 - c) * decay * (1.0 + _expm1_small(x0))
        xm = h_tau / (1.0 + 0.5 * (w0 + w1))
        return c + (w0 - c) * decay * (1.0 + _expm1_small(0.5 * (x0 + xm)))

    @njit(inline="always")
    def _expm1_small(x):
        """``e^x - 1``: the series where ``|x| <= 0.05`` (``analog_fast._series_exp``)."""
        if -0.05 <= x <= 0.05:
            return analog_fast._series_exp(x)
        return math.expm1(x)

    @njit(inline="always")
    def _snap(x):
        """``x`` (in steps) on the nearest step boundary where rounding put it a hair off."""
        r = math.floor(x + 0.5)
        return r if abs(x - r) <= 1e-9 * (1.0 + abs(x)) else x

    @njit(inline="always")
    def _open(ring, rows, k0, f0, whole, frac, a, s):
        """A pulse of drive ``a`` on slot ``s`` from ``f0`` into step ``k0`` (a ring row) for
        ``whole + frac`` steps: the four changes of the per-step mean drive it makes, at the
        steps where it opens and closes."""
        ring[k0, s] += a * (1.0 - f0)
        k = k0 + 1
        if k >= rows:
            k -= rows
        ring[k, s] += a * f0
        f1 = f0 + frac
        k = k0 + whole
        if f1 >= 1.0:
            f1 -= 1.0
            k += 1
        if k >= rows:
            k -= rows
        ring[k, s] -= a * (1.0 - f1)
        k += 1
        if k >= rows:
            k -= rows
        ring[k, s] -= a * f1

    @njit(inline="always")
    def _missed(ring, rows, k0, missed, s):
        """Step ``k0`` is past: its drive change ``missed`` moves to the next step, and the
        next step's mean drive is raised by it once (the charge of the past step's part)."""
        ring[k0, s] -= missed
        k = k0 + 1
        if k >= rows:
            k -= rows
        ring[k, s] += 2.0 * missed
        k += 1
        if k >= rows:
            k -= rows
        ring[k, s] -= missed

    @njit(parallel=True)
    def _kernel(spikes_in, arrival_step, in_delay, in_ptr, in_idx, in_val,
                nr_delay, nr_ptr, nr_idx, nr_val, rows, p_whole, p_frac,
                s_decay, s_log_decay, s_inv_open, s_h_tau, s_mean, s_gain, s_inv_gain,
                s_v0, s_w0,
                dpi, rest, n_ptr, n_slot, n_sign, dc, leak, gain, n_v0, n_w0, w_thr, v_thr,
                t_ref, rate_k, step, steps, model_dt, per_step, record_sample, rec_times,
                rec_neurons, rec_count, counts, membrane, residual, drive_floor):
        batch, channels, slots, n, n_in_groups, n_nr_groups = _sizes(
            spikes_in, s_decay, dc, in_delay, nr_delay)
        for b in prange(batch):
            ring = np.zeros((rows, slots))
            drive = np.zeros(slots)
            sv = s_v0.copy()
            sw = s_w0.copy()
            isyn = np.full(slots, rest)
            excess = np.zeros(slots)  # each slot's mean excess current over the step
            nv = n_v0.copy()
            nw = n_w0.copy()
            timer = np.zeros(n)
            fired_n = np.zeros(n * per_step, dtype=np.int64)
            fired_t = np.zeros(n * per_step)
            t_model = 0
            for k in range(steps):
                t0 = k * step
                # host events of model step t, sent at t * model_dt (a step boundary)
                if t_model < arrival_step.shape[0] and arrival_step[t_model] == k:
                    for c in range(channels):
                        if spikes_in[t_model, b, c]:
                            for g in range(n_in_groups):
                                row = g * channels + c
                                x = _snap((t_model * model_dt + in_delay[g]) / step)
                                k0 = int(math.floor(x))
                                f0 = x - k0
                                k0 %= rows
                                for e in range(in_ptr[row], in_ptr[row + 1]):
                                    s = in_idx[e]
                                    _open(ring, rows, k0, f0, p_whole[s], p_frac[s], in_val[e], s)
                    t_model += 1
                r = k % rows
                for s in range(slots):
                    dr = drive[s] + ring[r, s]
                    ring[r, s] = 0.0
                    drive[s] = dr
                    # the mean over the step: for a linear relaxation from w0 to w,
                    # c + (w0 - c) m with c = (w - w0 decay) / (1 - decay); undriven, w0 m
                    m = s_mean[s]
                    if dpi:
                        # sv holds ln w where the last step needed it, else nan (the linear
                        # regime keeps w alone: ln w costs a logarithm a step)
                        w0 = sw[s]
                        if dr <= drive_floor:
                            if w0 <= s_w0[s]:
                                excess[s] = 0.0  # at rest, undriven: stays there
                                continue
                            v = sv[s] + s_log_decay[s]
                            w = w0 * s_decay[s]
                            mean = w0 * m
                        else:
                            c = dr * s_inv_gain[s] - 1.0
                            if w0 > LINEAR and c > LINEAR:
                                w, v = _linear_step(c, w0, s_h_tau[s], s_decay[s]), math.nan
                            else:
                                v0 = sv[s]
                                if v0 != v0:
                                    v0 = math.log(w0)
                                v, w = _dpi_step(c, v0, w0, s_h_tau[s], residual)
                            target = (w - w0 * s_decay[s]) * s_inv_open[s]
                            mean = target + (w0 - target) * m
                        if w < s_w0[s]:
                            v = s_v0[s]
                            w = s_w0[s]
                            if mean < w:
                                mean = w
                        sv[s] = v
                        sw[s] = w
                        excess[s] = mean * s_gain[s] - rest
                    else:
                        w0 = isyn[s]
                        w = dr + (w0 - dr) * s_decay[s]
                        isyn[s] = w
                        target = (w - w0 * s_decay[s]) * s_inv_open[s]
                        excess[s] = target + (w0 - target) * m
                n_fired = 0
                for j in range(n):
                    i_in, i_leak, _ = _neuron_input(j, n_ptr, n_slot, n_sign, excess, dc, leak)
                    h = _refractory(timer, j, step)
                    if h <= 0.0:
                        continue
                    v = nv[j]
                    w = nw[j]
                    rate = rate_k * i_leak  # 1 / tau
                    c = (i_in - i_leak) / i_leak  # w_inf under the step's mean input
                    at = step - h  # where in the step the integration starts
                    fired = 0
                    while True:
                        # while rising, dw/dt and du/dt are at most (c - w) / tau: no crossing
                        # within h below either bound; at or above both, the crossing's time
                        # in closed form
                        ht = h * rate
                        if c > w_thr[j] and fired < per_step - 1 and \
                                w + (c - w) * ht >= w_thr[j]:
                            if v != v:
                                v = math.log(w)
                            tt = h + 1.0
                            if w >= w_thr[j]:
                                tt = 0.0
                            elif w + v + (c - w) * ht >= w_thr[j] + v_thr[j]:
                                tt = ((v_thr[j] - v) / c + (1.0 + 1.0 / c)
                                      * math.log((c - w) / (c - w_thr[j]))) / rate
                            if tt <= h:
                                fired += 1
                                at += tt
                                counts[b, j] += 1
                                fired_n[n_fired] = j
                                fired_t[n_fired] = t0 + at
                                n_fired += 1
                                if b == record_sample:
                                    q = rec_count[0]
                                    if q < rec_times.shape[0]:
                                        rec_times[q] = t0 + at
                                        rec_neurons[q] = j
                                        rec_count[0] = q + 1
                                v = n_v0[j]
                                w = n_w0[j]
                                h -= tt + t_ref[j]
                                at += t_ref[j]
                                if h <= 0.0:
                                    timer[j] = -h
                                    break
                                continue
                        # no crossing in what is left: relax over it
                        if c <= 0.0:
                            if w <= n_w0[j]:
                                break  # at the dark current with no net input: stays there
                            target = 0.0
                        else:
                            target = c
                        if w > LINEAR and target > LINEAR:
                            w, v = _linear_step(target, w, ht, math.exp(-ht)), math.nan
                        else:
                            if v != v:
                                v = math.log(w)
                            v, w = _dpi_step(target, v, w, ht, residual)
                        if w >= w_thr[j]:  # within rounding of the threshold: stop short
                            w = w_thr[j] * (1.0 - 1e-12)
                            v = math.nan
                        if w < n_w0[j]:
                            v = n_v0[j]
                            w = n_w0[j]
                        break
                    nv[j] = v
                    nw[j] = w
                # this step's spikes reach their targets; what would have arrived within this
                # step (a spike without delay) arrives in the next one, with the drive missed
                # in this step added to the next's so that the charge and closing time hold
                for q in range(n_fired):
                    j = fired_n[q]
                    for g in range(n_nr_groups):
                        x = _snap((fired_t[q] + nr_delay[g]) / step)
                        k0 = int(math.floor(x))
                        f0 = x - k0
                        late = k0 <= k
                        k0 %= rows
                        row = g * n + j
                        for e in range(nr_ptr[row], nr_ptr[row + 1]):
                            s = nr_idx[e]
                            a = nr_val[e]
                            _open(ring, rows, k0, f0, p_whole[s], p_frac[s], a, s)
                            if late:
                                _missed(ring, rows, k0, a * (1.0 - f0), s)
            for j in range(n):
                membrane[b, j] = nw[j] * gain[j]


def _network_arrays(net: Any, channels: int, dt: float, step: float, synapse: str) -> tuple:
    """The kernel's arguments that depend on the network alone, built once per network and step
    and kept on it. ``net`` was built at the simulator's ``dt``: its delays are whole ``dt``
    steps and its pulse widths ``whole + fraction`` of them; its synapses' ``exp(-dt / tau)``."""
    key = ("piecewise", channels, float(dt), float(step), synapse)
    cache = net.__dict__.setdefault("_compiled_arrays", {})
    if key in cache:
        return cache[key]
    slots = net.slots
    (in_delay, in_ptr, in_idx, in_val, nr_delay, nr_ptr, nr_idx, nr_val, n_ptr, n_slot, n_sign,
     gain, leak, w_thr) = analog_fast.network_basics(net, channels)
    width = np.zeros(slots)
    for members, whole, frac in net.pulse_groups:
        width[members] = (whole + frac) * dt
    p_whole = np.floor(width / step + 1e-9).astype(np.int64)
    p_frac = np.maximum(width / step - p_whole, 0.0)
    longest = max(float(in_delay.max(initial=0)), float(nr_delay.max(initial=0))) * dt
    # a pulse's changes reach at most (delay + width) / step + 2 steps ahead, and one more for
    # a zero-delay spike moved to the next step
    rows = 4 + int(math.ceil((longest + float(width.max(initial=0.0))) / step))
    tau = -dt / np.log(np.asarray(net.synapse_decay, dtype=np.float64))
    decay = np.exp(-step / tau)
    mean = -np.expm1(-step / tau) / (step / tau)  # (1 - e^-x) / x: the mean of e^(-t / tau)
    s_gain = np.asarray(net.synapse_gain, dtype=np.float64)
    dpi = synapse == "dpi"
    t_ref = np.asarray(net.t_ref, dtype=np.float64)
    # spikes one neuron can fire in a step: its refractory period bounds them; a neuron whose
    # bias gives none to speak of is held to MAX_PER_STEP (it has fired that fast in no circuit)
    per_step = 2 + int(min(math.ceil(step / max(float(t_ref.min(initial=step)), 1e-15)),
                           MAX_PER_STEP))
    cache[key] = (
        in_delay * dt, in_ptr, in_idx, in_val, nr_delay * dt, nr_ptr, nr_idx, nr_val, rows,
        p_whole, p_frac, decay, np.log(decay), 1.0 / (1.0 - decay), step / tau,
        mean, s_gain, 1.0 / s_gain,
        np.log(I_0 / s_gain), I_0 / s_gain, dpi, I_0 if dpi else 0.0,
        n_ptr, n_slot, n_sign, np.asarray(net.dc, dtype=np.float64), leak, gain,
        np.log(I_0 / gain), I_0 / gain, w_thr, np.log(w_thr), t_ref, RATE_K, per_step)
    return cache[key]


def check_step(step: float, dt: float) -> float:
    """The steps per model step; a ``ValueError`` unless ``step`` is a whole fraction of the
    model step (``biases.DT_SECONDS``) no shorter than ``dt``."""
    per_model = biases.DT_SECONDS / step if step > 0 else math.inf
    if not (math.isfinite(per_model) and step >= dt * (1 - 1e-9)
            and abs(per_model - round(per_model)) < 1e-6):
        raise ValueError(f"step must be a whole fraction of the model step "
                         f"({biases.DT_SECONDS} s) no shorter than dt ({dt} s), got {step}")
    return per_model


def simulate(net: Any, spikes_in: np.ndarray, dt: float, window: float, record: bool,
             synapse: str = "dpi", step: float = DEFAULT_STEP
             ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """One batch ``(T, B, channels)`` of host events through ``net`` (an ``analog._Network``
    built at ``dt``) on steps of ``step`` seconds: the contract of ``analog._simulate``."""
    if analog_fast.numba is None:
        raise ImportError("the piecewise analog integrator needs numba (pip install numba)")
    per_model = check_step(step, dt)
    steps_model, batch, channels = spikes_in.shape
    n = net.size
    steps = int(round(window / step))
    arrival = np.arange(steps_model, dtype=np.int64) * int(round(per_model))
    arrays = _network_arrays(net, channels, dt, step, synapse)
    counts = np.zeros((batch, n), dtype=np.int64)
    membrane = np.zeros((batch, n))
    cap = steps * n * arrays[-1] if record else 1
    rec_times = np.zeros(cap)
    rec_neurons = np.zeros(cap, dtype=np.int64)
    rec_count = np.zeros(1, dtype=np.int64)
    with torch_threads_kept():
        _kernel(np.ascontiguousarray(spikes_in, dtype=np.bool_), arrival, *arrays[:-1],
                float(step), steps, float(biases.DT_SECONDS), arrays[-1], 0 if record else -1,
                rec_times, rec_neurons, rec_count, counts, membrane, RESIDUAL, _DRIVE_FLOOR)
    recorded = None
    if record:
        m = int(rec_count[0])
        order = np.argsort(rec_times[:m], kind="stable")
        recorded = (rec_times[:m][order], rec_neurons[:m][order])
    return counts.astype(np.float64), membrane, recorded
