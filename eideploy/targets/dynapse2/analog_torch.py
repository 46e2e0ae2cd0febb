"""The analog simulator's reference integrator in torch: the same steps on a GPU where there is one.

``analog._simulate`` advances whole ``(batch, slots)`` arrays with numpy, one 10 us step after the
other; this module takes the very same steps with torch tensors, so that a CUDA device runs them
with every sample of a batch (a whole test split at once) in parallel. Layout: the state is kept
slot- and neuron-major, ``(slots, batch)`` and ``(neurons, batch)``, so that every routing
product is one sparse CSR matrix times a dense block without a transpose per step:

* the routing matrices (input and neuron entries per delay, the dendrite sums ``to_input`` and
  ``to_leak``) are the network's own, transposed once to CSR tensors on the device;
* the synapse (:func:`dpi_synapse_step`, :func:`analog.synapse_step`), the neuron
  (:func:`membrane_step`, ``_omega``) and the step's bookkeeping (``_neuron_update``) are the
  reference's formulas, written with ``torch.where`` instead of boolean indexing: no data-
  dependent shapes and no host synchronisation per step (only ``record`` reads sample 0's spikes
  back each step);
* float64 throughout, as the reference.

So the two integrators compute the same sums in different orders (sparse products): their spike
counts agree up to crossings that fall within rounding of a threshold
(``tests/test_analog_torch.py``). On a CPU this backend is no faster than the numpy reference
(it evaluates the DPI's solve on every synapse, driven or not, where the reference picks the
driven ones); it is there for the GPU, where ``benchmarks/analog.py`` measures it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse
import torch

from . import biases
from .analog_fast import _DRIVE_FLOOR, RATE_K
from .compile import I_0

__all__ = ["simulate", "resolve_device"]

_DTYPE = torch.float64


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None: CUDA where torch sees a GPU, else the CPU; otherwise the named device,
    with a clear error where torch cannot use it."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is no torch device (use 'auto', 'cpu' or "
                         "'cuda[:N]')") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: torch sees no CUDA GPU here; use 'cpu' or 'auto'")
    return resolved


def _csr(matrix: scipy.sparse.spmatrix, device: torch.device) -> torch.Tensor:
    """A scipy matrix, transposed, as a torch CSR tensor: ``(cols, rows)`` times a dense
    ``(rows, batch)`` block is the reference's ``rows @ matrix`` in this module's layout."""
    t = scipy.sparse.csr_matrix(matrix.T)
    t.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": used as documented
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(t.indptr.astype(np.int64)),
                                       torch.from_numpy(t.indices.astype(np.int64)),
                                       torch.from_numpy(t.data.astype(np.float64)),
                                       size=t.shape, dtype=_DTYPE, device=device,
                                       check_invariants=False)  # scipy's canonical CSR


def _column(values: Any, device: torch.device) -> torch.Tensor:
    """A per-slot or per-neuron vector as a ``(n, 1)`` column (a scalar stays a scalar)."""
    t = torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)
    return t.reshape(-1, 1) if t.dim() == 1 else t


def _omega(u: torch.Tensor) -> torch.Tensor:
    """``analog._omega``: Wright omega by four Newton steps in ``ln w``."""
    v = torch.where(u < 1.0, u, torch.log(torch.clamp(u - torch.log(torch.clamp(u, min=1.0)),
                                                      min=1e-300)))
    for _ in range(4):
        e = torch.exp(v)
        v = v - (e + v - u) / (e + 1.0)
    return torch.exp(v)


def dpi_synapse_step(i_syn: torch.Tensor, drive: torch.Tensor, i_gain: torch.Tensor,
                     decay: torch.Tensor) -> torch.Tensor:
    """``analog.dpi_synapse_step``: exponential Euler in ``u = w + ln w`` while driven, the exact
    decay while not, floored at ``I_0``."""
    w = i_syn / i_gain
    u = w + torch.log(w) + (drive / i_gain - 1.0 - w) * (1.0 - decay)
    out = torch.where(drive > _DRIVE_FLOOR, i_gain * _omega(u), i_syn * decay)
    return torch.clamp(out, min=I_0)


def membrane_step(i_mem: torch.Tensor, i_in: torch.Tensor, i_leak: torch.Tensor,
                  i_gain: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``analog.membrane_step``: the DPI neuron after ``h`` seconds, exponential Euler in ``u``."""
    w = i_mem / i_gain
    w_inf = torch.clamp((i_in - i_leak) / i_leak, min=0.0)
    relax = -torch.expm1(-h * RATE_K * i_leak)
    return torch.clamp(i_gain * _omega(w + torch.log(w) + (w_inf - w) * relax), min=I_0)


def _u(i_mem: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    w = i_mem / gain
    return w + torch.log(w)


def _neuron_update(i_mem: torch.Tensor, timer: torch.Tensor, i_in: torch.Tensor,
                   i_leak: torch.Tensor, gain: torch.Tensor, thr: torch.Tensor,
                   t_ref: torch.Tensor, dt: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``analog._neuron_update`` without writing in place: returns the new membrane and timer,
    the spikes and their times within the step."""
    h = torch.clamp(dt - timer, 0.0, dt)
    timer = timer - (dt - h)
    new = torch.where(h > 0, membrane_step(i_mem, i_in, i_leak, gain, h), i_mem)
    spikes = new >= thr
    lo, hi, at = _u(i_mem, gain), _u(new, gain), _u(thr.expand_as(new), gain)
    frac = torch.clamp(torch.where(spikes, (at - lo) / torch.where(hi > lo, hi - lo, 1.0), 1.0),
                       0.0, 1.0)
    t_cross = (dt - h) + frac * h
    timer = torch.where(spikes, torch.clamp(t_ref - (dt - t_cross), min=0.0), timer)
    return torch.where(spikes, I_0, new), timer, spikes, t_cross


def simulate(net: Any, spikes_in: np.ndarray, dt: float, window: float, record: bool,
             synapse: str = "dpi", device: str | torch.device | None = None
             ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """One batch ``(T, B, channels)`` of host events through ``net`` (an ``analog._Network``
    built at ``dt``) on ``device``: the contract and the steps of ``analog._simulate``."""
    dev = resolve_device(device)
    steps_model, batch = spikes_in.shape[:2]
    slots, n = net.slots, net.size
    arrivals = {int(round(t * biases.DT_SECONDS / dt)): t for t in range(steps_model)}
    events_in = torch.from_numpy(np.array(spikes_in, dtype=np.float64)).to(dev)  # a copy
    input_groups = [(delay, _csr(m, dev)) for delay, m in net.input_groups if m.nnz]
    neuron_groups = [(delay, _csr(m, dev)) for delay, m in net.neuron_groups if m.nnz]
    to_input = _csr(net.to_input.T, dev)  # (n, slots) as stored: rows are neurons already
    shunting = net.to_leak.nnz > 0
    to_leak = _csr(net.to_leak.T, dev) if shunting else None
    ring = 1 + max(k for k, _ in (*net.input_groups, *net.neuron_groups))
    incoming = torch.zeros((ring, slots, batch), dtype=_DTYPE, device=dev)
    history = 2 + max((whole for _, whole, _ in net.pulse_groups), default=0)
    pulses = torch.zeros((history, slots, batch), dtype=_DTYPE, device=dev)
    drive = torch.zeros((slots, batch), dtype=_DTYPE, device=dev)
    rest = I_0 if synapse == "dpi" else 0.0
    i_syn = torch.full((slots, batch), rest, dtype=_DTYPE, device=dev)
    i_mem = torch.full((n, batch), I_0, dtype=_DTYPE, device=dev)
    timer = torch.zeros((n, batch), dtype=_DTYPE, device=dev)
    counts = torch.zeros((n, batch), dtype=_DTYPE, device=dev)
    spikes = torch.zeros((n, batch), dtype=torch.bool, device=dev)
    gain, thr = _column(net.gain, dev), _column(net.threshold, dev)
    leak, dc, t_ref = _column(net.leak, dev), _column(net.dc, dev), _column(net.t_ref, dev)
    syn_gain, syn_decay = _column(net.synapse_gain, dev), _column(net.synapse_decay, dev)
    whole_net = len(net.pulse_groups) == 1
    closing = [(torch.as_tensor(members, device=dev), whole, frac)
               for members, whole, frac in net.pulse_groups]
    times: list[np.ndarray] = []
    neurons: list[np.ndarray] = []
    for k in range(int(round(window / dt))):
        if k in arrivals:
            events = events_in[arrivals[k]].T  # (channels, batch)
            for delay, matrix in input_groups:
                incoming[(k + delay) % ring] += matrix @ events
        if neuron_groups:
            fired = spikes.to(_DTYPE)
            for delay, matrix in neuron_groups:
                incoming[(k + delay) % ring] += matrix @ fired
        arrived = incoming[k % ring]
        pulses[k % history] = arrived
        drive += arrived
        arrived.zero_()
        for members, whole, frac in closing:
            ending = pulses[(k - whole) % history]
            late = pulses[(k - whole - 1) % history]
            if whole_net:
                drive -= (1.0 - frac) * ending + frac * late
            else:
                drive[members] -= (1.0 - frac) * ending[members] + frac * late[members]
        if synapse == "dpi":
            i_syn = dpi_synapse_step(i_syn, drive, syn_gain, syn_decay)
        else:
            i_syn = drive + (i_syn - drive) * syn_decay
        excess = i_syn - rest
        i_in = dc + to_input @ excess
        i_leak = leak + to_leak @ excess if to_leak is not None else leak
        i_mem, timer, spikes, t_cross = _neuron_update(i_mem, timer, i_in, i_leak, gain, thr,
                                                       t_ref, dt)
        counts += spikes
        if record:
            fired_0 = torch.nonzero(spikes[:, 0]).flatten()
            if fired_0.numel():
                neurons.append(fired_0.cpu().numpy())
                times.append(k * dt + t_cross[fired_0, 0].cpu().numpy())
    recorded = None
    if record:
        recorded = (np.concatenate(times) if times else np.zeros(0),
                    np.concatenate(neurons) if neurons else np.zeros(0, dtype=np.int64))
    return counts.T.cpu().numpy(), i_mem.T.cpu().numpy(), recorded
