"""The float executor of the E-I graph: the semantics of ``ir.py`` run in numpy (DESIGN §1).

It is the reference every later stage is compared with (quantized weights, the integer simulator,
the analog model), so it computes what the torch model computes: the circuit in float32 with
torch's order of operations where that order is observable (Eq. 14 as ``q = (I_EE - I_sub) /
Stab(I_div)``, ``I_int = q g_E + b_E``; the LIF's ``h = decay u + I``), the projection sums
accumulated in float64 and rounded once (see ``ACCUMULATE``); lowering is tested against the torch
forward to 1e-5. ``dtype=np.float64`` runs everything in float64, a reference free of rounding
races at the spike thresholds. The circuit functions below mirror, one for one,
``eideploy.nn.functional``: ``lif_multistep``, ``inhibitory_response``, ``stabilise`` (§5.1),
``ei_integrate`` (Eqs. 12-14) and ``ei_readout``.

Time, as in the torch model (spec §1): a static input ``(B, *in_shape)`` is the same at every
step, a sequence ``(B, T, *in_shape)`` is made time-major. Every activity here is an array
``(S, B, *shape)`` with ``S = T``, or ``S = 1`` while it is still the same at every step (the
stem before the first LIF, on static input): that part is computed once, exactly as the torch
network's ``share_static_stem`` does, and broadcast when it meets the first time-varying value.
Projections then act on all ``S*B`` rows at once; only the LIF loops over time.

Spikes in, spikes out (hardware graphs, ``eideploy.nn.encoding``): with the input encoding
(``graph.input_settings``) ``if`` the executor encodes the intensities exactly as the torch model
does (``if_encode``, the same float32 operations, so the same spikes); ``bernoulli`` draws from
numpy's generator seeded by the settings' ``seed`` per batch (the same statistics as torch's
draws, not the same spikes). A ``spiking`` readout integrates ``o[t]`` in a non-leaky
integrate-and-fire neuron (``if_readout``): :meth:`FloatExecutor.run` still returns the
time-averaged current (equal to the torch logits), :meth:`FloatExecutor.readout_spikes` the
spike counts and membranes, and :meth:`FloatExecutor.predict` / :func:`accuracy` decide by
count, ties broken by membrane.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

import numpy as np
import scipy.sparse

from .host import ENCODINGS, READOUT_MODES, Host, if_encode, readout_decision
from .ir import EIGraph, GraphError, Population, Projection

__all__ = ["FloatExecutor", "run", "accuracy", "predict", "lif_multistep", "inhibitory_response",
           "stabilise", "ei_integrate", "ei_readout", "avg_pool", "conv2d", "if_encode",
           "if_readout", "readout_decision", "ENCODINGS", "READOUT_MODES"]

#: The arithmetic the executor can run in: float32 (the trained model's, the default) or float64
#: (a reference with rounding far below any spike threshold margin, to compare semantics).
DTYPES = (np.float32, np.float64)
#: Projection sums are accumulated in float64 and rounded once to the run's dtype. The float32
#: currents are then the (almost always) correctly rounded sums, independent of the op form and
#: of BLAS blocking: a conv graph and its unrolled sparse twin give bit-identical currents instead
#: of sums that differ by a few ulp, enough to flip a spike sitting within 1e-6 of threshold.
#: Against torch, only torch's own float32 rounding is left.
ACCUMULATE = np.float64
#: Largest im2col buffer one convolution call builds; bigger batches are convolved in chunks of
#: samples, so memory stays flat while each chunk is still one large GEMM.
IM2COL_BYTES = 64 << 20


States = dict[str, dict[str, np.ndarray]]


# --------------------------------------------------------------------------- the circuit
def lif_multistep(current: np.ndarray, steps: int, tau: float, v_threshold: float) -> np.ndarray:
    """Excitatory LIF over ``(S, B, ...)`` currents for ``steps`` steps (spec §2.1).

    ``h[t] = (1 - 1/tau) u[t-1] + I[t]``, ``s[t] = h[t] >= theta``, soft reset
    ``u[t] = h[t] - theta s[t]``, ``u[-1] = 0``. A current with ``S = 1`` is the same at every step.
    """
    dtype = current.dtype.type
    decay, theta = dtype(1.0 - 1.0 / tau), dtype(v_threshold)
    spikes = np.empty((steps, *current.shape[1:]), dtype=dtype)
    u = np.zeros(current.shape[1:], dtype=dtype)
    for t in range(steps):
        h = u * decay + current[t if current.shape[0] > 1 else 0]
        np.greater_equal(h, theta, out=spikes[t], casting="unsafe")
        u = h - spikes[t] * theta
    return spikes


def inhibitory_response(i_ie: np.ndarray, mode: str, theta_i: float) -> np.ndarray:
    """``r_I = I_IE`` (``identity``, the reference) or ``floor(relu(I_IE) / theta_I)`` (paper)."""
    if mode == "identity":
        return i_ie
    if mode == "floor":
        dtype = i_ie.dtype.type
        return np.floor(np.maximum(i_ie, dtype(0)) / dtype(theta_i))
    raise GraphError(f"unknown interneuron response {mode!r}; use 'identity' or 'floor'")


def stabilise(i_div: np.ndarray, mode: str, eps: float) -> np.ndarray:
    """Stab() of §5.1 on ``(S, B, ...)``: ``adaptive`` or ``fixed-eps`` (divisor + eps).

    ``adaptive``: in each (t, b) row, over all neurons of the population, exact zeros become the
    row's smallest positive value; an all-zero row stays +inf, so the division gives 0 there
    (the reference's quirk: the output is just b_E).
    """
    if mode == "fixed-eps":
        return i_div + i_div.dtype.type(eps)
    if mode != "adaptive":
        raise GraphError(f"unknown stabilisation {mode!r}; the float executor runs 'adaptive' "
                         "and 'fixed-eps'")
    rows = i_div.reshape(*i_div.shape[:2], -1)
    zero = rows == 0
    row_min = np.where(zero, rows.dtype.type(np.inf), rows).min(axis=-1, keepdims=True)
    return np.where(zero, row_min, rows).reshape(i_div.shape)


def ei_integrate(i_ee: np.ndarray, i_sub: np.ndarray, i_div: np.ndarray | None,
                 gain_e: np.ndarray, bias: np.ndarray, stabilisation: str,
                 eps: float) -> np.ndarray:
    """Eq. 14: ``I_int = g_E (I_EE - I_sub) / Stab(I_div) + b_E``.

    Evaluated as torch's fused layer does, ``q = (I_EE - I_sub) / D`` then ``q g_E + b_E``, so the
    float32 roundings agree. A population without divisive input (``i_div`` None) is not divided.
    """
    q = i_ee - i_sub
    if i_div is not None:
        q = q / stabilise(i_div, stabilisation, eps)
    return q * gain_e + bias


def ei_readout(i_ee: np.ndarray, i_sub: np.ndarray) -> np.ndarray:
    """Output layer: ``o = I_EE - I_sub``; no division, no gains, no LIF (spec §3)."""
    return i_ee - i_sub


def if_readout(o_seq: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-leaky IF readout with soft reset over ``(T, B, classes)``: ``(counts, membrane)``,
    with ``counts * theta + membrane = sum_t o[t]`` (``nn.encoding.if_readout``)."""
    dtype = o_seq.dtype.type
    theta_ = dtype(theta)
    v = np.zeros(o_seq.shape[1:], dtype=dtype)
    counts = np.zeros(o_seq.shape[1:], dtype=dtype)
    for t in range(o_seq.shape[0]):
        v = v + o_seq[t]
        n = np.floor(np.maximum(v, dtype(0)) / theta_)
        counts = counts + n
        v = v - n * theta_
    return counts, v


# --------------------------------------------------------------------------- the operators
def avg_pool(x: np.ndarray, k: int) -> np.ndarray:
    """AvgPool2d(k, k) in floor mode on ``(N, C, H, W)``: odd edges are dropped, as in torch."""
    n, c, h, w = x.shape
    ho, wo = h // k, w // k
    windows = x[:, :, :ho * k, :wo * k].reshape(n, c, ho, k, wo, k)
    return windows.sum(axis=(3, 5)) / x.dtype.type(k * k)


def conv2d(x: np.ndarray, weight: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlation of ``(N, C, H, W)`` with ``(O, C, k, k)``, as torch's ``conv2d``.

    im2col from a strided sliding-window view, then one GEMM per chunk of samples: no loop over
    pixels, and the column buffer bounded by ``IM2COL_BYTES``.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    w2 = weight.reshape(o, c * kh * kw).T
    out = np.empty((n, o, ho, wo), dtype=np.result_type(x, weight))
    per_sample = ho * wo * c * kh * kw * out.itemsize
    chunk = max(1, IM2COL_BYTES // max(per_sample, 1))
    for start in range(0, n, chunk):
        part = x[start:start + chunk]
        win = np.lib.stride_tricks.sliding_window_view(part, (kh, kw), axis=(2, 3))
        win = win[:, :, ::stride, ::stride][:, :, :ho, :wo]  # (n, C, Ho, Wo, kh, kw)
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw)
        out[start:start + chunk] = (cols @ w2).reshape(-1, ho, wo, o).transpose(0, 3, 1, 2)
    return out


def _pointwise(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``out[n, e, ...] = sum_i W[e, i] x[n, i, ...]``: W_EI at every pixel (a 1x1 conv)."""
    if x.ndim == 2:
        return x @ weight.T
    n, c, h, w = x.shape
    mixed = x.transpose(0, 2, 3, 1).reshape(-1, c) @ weight.T
    return np.ascontiguousarray(mixed.reshape(n, h, w, -1).transpose(0, 3, 1, 2))


def _map_shape(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else None


Operator = Callable[[np.ndarray], np.ndarray]


def _compile_projection(proj: Projection, source: Population, target: Population,
                        problems: list[str]) -> Operator | None:
    """The function ``(N, *source.shape) -> (N, *target.shape)`` of one projection, in
    ``ACCUMULATE`` precision.

    Shapes are checked here, once, so a malformed graph fails with every bad projection named
    rather than with a numpy broadcasting error deep inside a batch.
    """
    where = f"projection {proj.name} ({proj.op}, {proj.source} -> {proj.target})"
    pool = int(proj.attrs.get("pool", 1))
    src = tuple(source.shape)
    if pool > 1:
        src_map = _map_shape(src)
        if src_map is None:
            problems.append(f"{where}: pool {pool} needs a (C, H, W) source, got {src}")
            return None
        pooled: tuple[int, ...] = (src[0], src[1] // pool, src[2] // pool)
        if min(pooled[1:]) < 1:
            problems.append(f"{where}: pool {pool} shrinks the {src} source to nothing")
            return None
    else:
        pooled = src
    build = _OPERATORS.get(proj.op)
    if build is None:
        problems.append(f"{where}: unknown op {proj.op!r}")
        return None
    weight = np.ascontiguousarray(proj.weight, dtype=ACCUMULATE)
    op = build(proj, weight, pooled, tuple(target.shape), where, problems)
    if op is None or pool == 1:
        return op
    return lambda x: op(avg_pool(x, pool))


def _dense(proj: Projection, weight: np.ndarray, pooled: tuple[int, ...],
           tgt: tuple[int, ...], where: str, problems: list[str]) -> Operator | None:
    n_src, n_tgt = int(np.prod(pooled)), int(np.prod(tgt))
    if weight.shape != (n_tgt, n_src):
        problems.append(f"{where}: weight {weight.shape}, expected ({n_tgt}, {n_src}) for a "
                        f"{pooled} source (C-major) and a {tgt} target")
        return None
    w_t = np.ascontiguousarray(weight.T)
    return lambda x: (x.reshape(x.shape[0], -1) @ w_t).reshape(-1, *tgt)


def _conv(proj: Projection, weight: np.ndarray, pooled: tuple[int, ...],
          tgt: tuple[int, ...], where: str, problems: list[str]) -> Operator | None:
    stride, padding = int(proj.attrs.get("stride", 1)), int(proj.attrs.get("padding", 0))
    if weight.ndim != 4 or len(pooled) != 3 or len(tgt) != 3:
        problems.append(f"{where}: conv needs (C, H, W) populations and a (O, C, k, k) "
                        f"weight, got {pooled} -> {tgt} with {weight.shape}")
        return None
    kh, kw = weight.shape[2:]
    out_hw = ((pooled[1] + 2 * padding - kh) // stride + 1,
              (pooled[2] + 2 * padding - kw) // stride + 1)
    if weight.shape[:2] != (tgt[0], pooled[0]) or out_hw != tgt[1:]:
        problems.append(f"{where}: weight {weight.shape} with stride {stride} and padding "
                        f"{padding} maps {pooled} to {(weight.shape[0], *out_hw)}, "
                        f"not the target {tgt}")
        return None
    return lambda x: conv2d(x, weight, stride, padding)


def _pointwise_operator(proj: Projection, weight: np.ndarray, pooled: tuple[int, ...],
                        tgt: tuple[int, ...], where: str, problems: list[str]
                        ) -> Operator | None:
    if weight.shape != (tgt[0], pooled[0]) or tuple(pooled[1:]) != tuple(tgt[1:]):
        problems.append(f"{where}: point-wise weight {weight.shape} does not map {pooled} "
                        f"to {tgt} (same pixels, channels {pooled[0]} -> {tgt[0]})")
        return None
    return lambda x: _pointwise(x, weight)


def _sparse(proj: Projection, weight: np.ndarray, pooled: tuple[int, ...],
            tgt: tuple[int, ...], where: str, problems: list[str]) -> Operator | None:
    n_src, n_tgt = int(np.prod(pooled)), int(np.prod(tgt))
    indices = proj.indices
    if indices is None or indices.ndim != 2 or indices.shape != (weight.shape[0], 2):
        problems.append(f"{where}: sparse projections need indices (nnz, 2)")
        return None
    if indices.size and (indices.min() < 0 or indices[:, 0].max() >= n_tgt
                         or indices[:, 1].max() >= n_src):
        problems.append(f"{where}: indices out of range for {n_tgt} target and {n_src} "
                        "source neurons")
        return None
    # CSR (target x source): duplicate pairs add up, as parallel synapses do.
    matrix = scipy.sparse.csr_matrix((weight, (indices[:, 0], indices[:, 1])),
                                     shape=(n_tgt, n_src), dtype=ACCUMULATE)
    return lambda x: np.ascontiguousarray(
        (matrix @ x.reshape(x.shape[0], -1).T).T).reshape(-1, *tgt)


#: The operator builder of each projection op: ``(projection, weight, pooled source shape,
#: target shape, where, problems) -> operator``, None (and a problem) on a shape mismatch.
_OPERATORS: dict[str, Callable[..., Operator | None]] = {
    "dense": _dense, "conv": _conv, "pointwise": _pointwise_operator, "sparse": _sparse}


def _rounded(op: Operator, dtype: type) -> Operator:
    """``op`` on the input widened to ``ACCUMULATE``, its sums rounded once to ``dtype``."""
    return lambda x: op(x.astype(ACCUMULATE, copy=False)).astype(dtype, copy=False)


def _channel_array(pop: Population, key: str, default: float, dtype: type,
                   problems: list[str]) -> np.ndarray:
    """``gain_e`` / ``bias`` broadcastable against ``(S, B, *shape)``: per channel or neuron."""
    value = pop.arrays.get(key)
    if value is None:
        return np.full((1,) * (len(pop.shape) + 2), default, dtype=dtype)
    value = np.asarray(value, dtype=dtype)
    if value.size == pop.channels:
        return value.reshape(pop.channels, *([1] * (len(pop.shape) - 1)))
    if value.size == pop.size:
        return value.reshape(pop.shape)
    problems.append(f"population {pop.name}: {key} has {value.size} values, expected one per "
                    f"channel ({pop.channels}) or per neuron ({pop.size})")
    return np.zeros(1, dtype=dtype)


# --------------------------------------------------------------------------- the executor
class FloatExecutor:
    """A graph checked and prepared once (operators, CSR matrices), then run on many batches.

    ``dtype`` is the arithmetic: float32, as the trained model computes, or float64.
    """

    def __init__(self, graph: EIGraph, dtype: type = np.float32) -> None:
        graph.validate()
        self.graph = graph
        self.dtype = np.dtype(dtype).type
        if self.dtype not in DTYPES:
            raise ValueError(f"the float executor runs in float32 or float64, not {dtype}")
        problems: list[str] = []
        if graph.T < 1:
            problems.append(f"T must be >= 1, got {graph.T}")
        self._read_settings(problems)
        self._compile(problems)
        if problems:
            raise GraphError(f"graph {graph.name} cannot run: " + "; ".join(problems))
        self.host = Host(graph, self.dtype)
        # After its last consumer, a population's activity can be dropped (when not recording).
        self.last_use = {p.source: i for i, pop in enumerate(graph.populations)
                         for p in graph.projections_into(pop.name)}

    def _read_settings(self, problems: list[str]) -> None:
        """The graph's input, readout and division settings, checked for what this runs."""
        graph = self.graph
        inputs, readout, division = (graph.input_settings, graph.readout_settings,
                                     graph.division_settings)
        self.encoding = inputs.encoding
        if self.encoding not in ENCODINGS:
            problems.append(f"input encoding {self.encoding!r}: the float executor runs "
                            f"{', '.join(ENCODINGS)}")
        self.input = graph.population(inputs.population)
        self.readout = readout.population
        self.readout_mode, self.theta_out = readout.mode, readout.theta_out
        readout_pop = graph.population(readout.population)
        if readout_pop.role != "readout":
            problems.append(f"readout population {self.readout} has role {readout_pop.role!r}, "
                            "not 'readout'")
        if readout.classes is not None and readout_pop.size % readout.classes:
            problems.append(f"readout: {readout.classes} classes, but population "
                            f"{self.readout} has {readout_pop.size} neurons (a multiple of "
                            "the classes: the same number of neurons per class)")
        self.stabilisation, self.eps = division.stabilisation, division.eps

    def _compile(self, problems: list[str]) -> None:
        """Every projection's operator, every E population's ``gain_e`` and ``bias``; each
        population checked for the projection kinds its role takes and its parameters."""
        graph = self.graph
        pops = {p.name: p for p in graph.populations}
        self.operators: dict[str, Operator] = {}
        for proj in graph.projections:
            op = _compile_projection(proj, pops[proj.source], pops[proj.target], problems)
            if op is not None:
                self.operators[proj.name] = _rounded(op, self.dtype)
        self.channel_arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        allowed = {"input": (), "inh": ("exc",), "exc": ("exc", "sub", "div"),
                   "readout": ("exc", "sub")}
        for pop in graph.populations:
            if pop.role == "input" and pop.name != self.input.name:
                problems.append(f"population {pop.name}: a second input population (the graph "
                                f"reads one, {self.input.name})")
            kinds = {p.kind for p in graph.projections_into(pop.name)}
            extra = sorted(kinds - set(allowed.get(pop.role, ())))
            if extra:
                problems.append(f"population {pop.name} ({pop.role}) cannot take {', '.join(extra)}"
                                " projections")
            if pop.role == "exc":
                self.channel_arrays[pop.name] = (
                    _channel_array(pop, "gain_e", 1.0, self.dtype, problems),
                    _channel_array(pop, "bias", 0.0, self.dtype, problems))
                for key in ("tau", "v_threshold"):
                    if key not in pop.params:
                        problems.append(f"population {pop.name}: LIF parameter {key} missing")
            if pop.role == "inh" and pop.params.get("response", "identity") not in (
                    "identity", "floor"):
                problems.append(f"population {pop.name}: response "
                                f"{pop.params.get('response')!r} is not 'identity' or 'floor'")

    # ---- input
    def fold_input(self, x: Any) -> np.ndarray:
        """``(B, *in_shape)`` -> ``(1, B, ...)``; ``(B, T, *in_shape)`` -> ``(T, B, ...)``."""
        return self.host.fold(x)

    def encode_input(self, folded: np.ndarray) -> np.ndarray:
        """``(S, B, ...)`` intensities -> the ``(T, B, ...)`` spikes the host sends
        (``graph.host``); ``direct`` and ``spikes`` inputs pass as given."""
        return self.host.encode(folded)

    # ---- the pass
    def _gather(self, pop: Population, kind: str, out: dict[str, np.ndarray]
                ) -> np.ndarray | None:
        """Sum of one kind's projections into ``pop``, as ``(S, B, *shape)``; None if none."""
        total = None
        for proj in self.graph.projections_into(pop.name, kind):
            src = out[proj.source]
            steps, batch = src.shape[:2]
            value = self.operators[proj.name](src.reshape(steps * batch, *src.shape[2:]))
            value = value.reshape(steps, batch, *pop.shape)
            total = value if total is None else total + value
        return total

    def _currents(self, pop: Population, out: dict[str, np.ndarray], batch: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(I_EE, I_sub, I_div)`` into ``pop`` (Eqs. 9, 12, 13). No excitatory input: zeros,
        the same at every step; no GABA: 0; no SHUNT: None (no division)."""
        i_ee = self._gather(pop, "exc", out)
        if i_ee is None:
            i_ee = np.zeros((1, batch, *pop.shape), dtype=self.dtype)
        i_sub = self._gather(pop, "sub", out)
        if i_sub is None:
            i_sub = np.zeros((1,) * i_ee.ndim, dtype=self.dtype)
        return i_ee, i_sub, self._gather(pop, "div", out)

    def run(self, x: Any, *, return_states: bool = False
            ) -> np.ndarray | tuple[np.ndarray, States]:
        """Logits ``(B, classes)``: the time average of the readout current (spec §3)."""
        graph, steps = self.graph, self.graph.T
        out: dict[str, np.ndarray] = {}
        states: States = {}
        spikes_in = self.encode_input(self.fold_input(x))
        batch = spikes_in.shape[1]
        for index, pop in enumerate(graph.populations):
            if pop.role == "input":
                current = output = spikes_in
            else:
                i_ee, i_sub, i_div = self._currents(pop, out, batch)
                if pop.role == "inh":
                    current = i_ee
                    output = inhibitory_response(i_ee, pop.params.get("response", "identity"),
                                                 float(pop.params.get("theta_i", 1.0)))
                elif pop.role == "readout":
                    current = output = ei_readout(i_ee, i_sub)
                else:
                    gain_e, bias = self.channel_arrays[pop.name]
                    current = ei_integrate(i_ee, i_sub, i_div, gain_e, bias, self.stabilisation,
                                           self.eps)
                    output = lif_multistep(current, steps, float(pop.params["tau"]),
                                           float(pop.params["v_threshold"]))
            out[pop.name] = output
            if return_states:
                full = (steps, batch, *pop.shape)
                states[pop.name] = {
                    "current": np.ascontiguousarray(np.broadcast_to(current, full)),
                    "output": np.ascontiguousarray(np.broadcast_to(output, full))}
            for name in [n for n, last in self.last_use.items() if last == index]:
                if name != self.readout:
                    out.pop(name, None)
        o = out[self.readout]
        logits = o[0].copy() if o.shape[0] == 1 else o.mean(axis=0)
        logits = logits.reshape(batch, -1)
        if return_states and self.readout_mode == "spiking":
            full = np.broadcast_to(o, (steps, *o.shape[1:])).reshape(steps, batch, -1)
            counts, membrane = if_readout(full, self.theta_out)
            states[self.readout].update(counts=counts, membrane=membrane)
        return (logits, states) if return_states else logits

    def readout_spikes(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, membrane)`` ``(B, readout neurons)`` of the spiking readout."""
        if self.readout_mode != "spiking":
            raise GraphError(f"graph {self.graph.name} has a {self.readout_mode!r} readout, "
                             "not a spiking one")
        _, states = self.run(x, return_states=True)
        return states[self.readout]["counts"], states[self.readout]["membrane"]

    def predict(self, x: Any) -> np.ndarray:
        """Predicted classes ``(B,)``: by spike count (ties: membrane) for a spiking readout,
        else the largest time-averaged current."""
        if self.readout_mode == "spiking":
            return self.host.decide(*self.readout_spikes(x))
        return self.host.decide_current(self.run(x))


@overload
def run(graph: EIGraph, x: Any, *, return_states: Literal[False] = False,
        dtype: type = np.float32) -> np.ndarray: ...


@overload
def run(graph: EIGraph, x: Any, *, return_states: Literal[True],
        dtype: type = np.float32) -> tuple[np.ndarray, States]: ...


def run(graph: EIGraph, x: Any, *, return_states: bool = False, dtype: type = np.float32
        ) -> np.ndarray | tuple[np.ndarray, States]:
    """Run ``graph`` on a batch: logits ``(B, classes)`` equal to the torch model's forward.

    ``x`` is ``(B, *in_shape)`` (static, the same at every step) or ``(B, T, *in_shape)``. With
    ``return_states`` also returns, per population, ``{"current", "output"}`` arrays of shape
    ``(T, B, *shape)``: input values; I_IE and r_I; I_int and spikes; o and o for the readout.
    ``dtype`` float32 (default) computes as the trained model does; float64 is a reference whose
    rounding is far below any spike threshold margin.
    """
    return FloatExecutor(graph, dtype).run(x, return_states=return_states)


def accuracy(graph: EIGraph, x: Any, y: Any, batch_size: int = 256,
             dtype: type = np.float32) -> float:
    """Top-1 accuracy in percent (the trainer's unit) of ``graph`` on ``(x, y)``, in batches:
    the decision of :meth:`FloatExecutor.predict` (spike counts for a spiking readout)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    executor = FloatExecutor(graph, dtype)
    labels = np.asarray(y).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(f"accuracy: {len(x)} inputs but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("accuracy: no samples")
    correct = 0
    for start in range(0, len(labels), batch_size):
        predicted = executor.predict(x[start:start + batch_size])
        correct += int((predicted == labels[start:start + batch_size]).sum())
    return 100.0 * correct / len(labels)


def predict(graph: EIGraph, x: Any, dtype: type = np.float32) -> np.ndarray:
    """Predicted classes of ``graph`` on a batch (spike counts for a spiking readout)."""
    return FloatExecutor(graph, dtype).predict(x)
