"""The bit-accurate integer simulator of a quantized E-I graph (docs/integer-semantics.md).

It runs what ``eideploy.graph.execute`` runs (spec §3, Eqs. 9-15), with every quantity an integer
of a documented width: weights as unsigned ``WEIGHT_BITS`` levels on a per-dendrite grid
``2**-F``, currents in ``ACCUMULATOR_BITS`` signed accumulators, inhibitory spike counts in
``COUNT_BITS``, membranes in ``MEMBRANE_BITS`` with ``MEMBRANE_FRAC`` fractional bits. Every
clamp to a width is counted (``IntegerResult.saturations``) and the largest magnitude each
quantity reached is returned (``IntegerResult.peaks``), so a test can check the widths hold.
Eq. 14's division runs by one of ``eideploy.sim.division``'s methods (``exact``, ``lut:N``,
``shift``).

Scope: graphs as ``quantize_graph`` writes them (sparse or dense projections, no pooling),
``floor`` interneurons, ``fixed-eps`` stabilisation, LIF populations with ``tau`` a power of two,
``if`` / ``bernoulli`` / ``spikes`` input (encoded on the host exactly as the float executor
does), ``spiking`` or ``current`` readout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse

from ..graph.execute import FloatExecutor, readout_decision
from ..graph.ir import EIGraph, GraphError, Population, Projection
from .division import DIVISOR_BITS, divide, parse_division

__all__ = ["IntegerSimulator", "IntegerResult", "Synapses", "accuracy", "to_fixed",
           "round_shift", "lif_decay", "saturate", "WEIGHT_BITS", "ACCUMULATOR_BITS",
           "COUNT_BITS", "MEMBRANE_BITS", "MEMBRANE_FRAC", "DIVIDEND_BITS", "GAIN_FRAC",
           "MAX_FRAC"]

#: A synapse's weight: an unsigned level of this many bits on its dendrite's grid 2**-F.
WEIGHT_BITS = 12
#: Signed accumulators of the dendrite currents (I_IE, I_EE, I_sub, I_div) and of I_int.
ACCUMULATOR_BITS = 32
#: Unsigned inhibitory spike counts r_I = floor(relu(I_IE) / theta_I) and readout spike counts.
COUNT_BITS = 16
#: Signed membranes (LIF and readout), with MEMBRANE_FRAC fractional bits; I_int shares the format.
MEMBRANE_BITS = 32
MEMBRANE_FRAC = 16
#: Signed dividend of Eq. 14 after alignment; 46 bits keep |N| * reciprocal (17 bits) in int64.
DIVIDEND_BITS = 46
#: Fractional bits of g_E when it is not 1 (quantized graphs fold g_E into the weights).
GAIN_FRAC = 12
#: Largest grid exponent a dendrite may use (a weight grid finer than 2**-30 is not needed).
MAX_FRAC = 30


def to_fixed(value: Any, frac: int) -> np.ndarray:
    """``round(value * 2**frac)`` half away from zero, as int64."""
    scaled = np.asarray(value, dtype=np.float64) * (2.0 ** frac)
    return (np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)).astype(np.int64)


def round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """``x * 2**-shift`` rounded half away from zero (``shift > 0``); ``x << -shift`` else."""
    if shift <= 0:
        return x << -shift
    half = np.int64(1) << (shift - 1)
    return np.where(x < 0, -((-x + half) >> shift), (x + half) >> shift)


def lif_decay(u: np.ndarray, log2_tau: int) -> np.ndarray:
    """``u (1 - 2**-j)`` as ``u - ceil(u / 2**j)`` = ``u + ((-u) >> j)``: for tau = 2 (j = 1)
    this is ``u >> 1``, the arithmetic shift (floor) by one."""
    return u + ((-u) >> log2_tau)


def saturate(x: np.ndarray, bits: int, signed: bool, name: str,
             counts: dict[str, int], peaks: dict[str, int]) -> np.ndarray:
    """Clamp ``x`` to ``bits`` (signed: ``[-2**(b-1), 2**(b-1) - 1]``; unsigned:
    ``[0, 2**b - 1]``), adding the number of clamped elements to ``counts[name]``."""
    high = (np.int64(1) << (bits - 1 if signed else bits)) - 1
    low = -high - 1 if signed else np.int64(0)
    over = int(np.count_nonzero((x > high) | (x < low)))
    counts[name] = counts.get(name, 0) + over
    if over:
        x = np.clip(x, low, high)
    if x.size:
        peaks[name] = max(peaks.get(name, 0), int(np.abs(x).max()))
    return x


def grid_frac(max_weight: float) -> int:
    """The finest grid ``2**-F`` on which ``max_weight`` is a ``WEIGHT_BITS``-bit level."""
    if max_weight <= 0:
        return MAX_FRAC
    frac = int(np.floor(np.log2(((1 << WEIGHT_BITS) - 1) / max_weight)))
    while frac > -MAX_FRAC and to_fixed(max_weight, frac) >= (1 << WEIGHT_BITS):
        frac -= 1  # the float log2 may land one too high
    return min(frac, MAX_FRAC)


@dataclass
class Synapses:
    """One projection as integers: ``levels`` (nnz,) unsigned on the grid ``2**-frac``, and
    the (target, source) ``indices``; ``matrix`` the int64 CSR (target x source)."""

    projection: str
    kind: str
    source: str
    levels: np.ndarray
    indices: np.ndarray
    frac: int
    matrix: scipy.sparse.csr_matrix


@dataclass
class IntegerResult:
    """The readout's spike ``counts`` and ``membrane`` (B, classes) in integers (membrane in
    Q.MEMBRANE_FRAC; for a ``current`` readout, counts are the summed currents in the same
    format and the membrane 0), the ``saturations`` per quantity and the ``peaks``
    (largest magnitude reached) per quantity."""

    counts: np.ndarray
    membrane: np.ndarray
    saturations: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def predictions(self) -> np.ndarray:
        return readout_decision(self.counts, self.membrane)


class IntegerSimulator:
    """A quantized graph turned into integers once, then run on batches (module doc)."""

    def __init__(self, graph: EIGraph, division: str = "exact") -> None:
        parse_division(division)
        self.division = division
        self.graph = graph
        self.host = FloatExecutor(graph)  # input encoding only: the host's spikes, bit for bit
        if self.host.encoding == "direct":
            raise GraphError(f"graph {graph.name}: the integer simulator takes spikes ('if', "
                             "'bernoulli' or 'spikes' input encoding), not analog 'direct' input")
        problems: list[str] = []
        stabilisation = str(graph.division.get("stabilisation", "adaptive"))
        if stabilisation != "fixed-eps":
            problems.append(f"division stabilisation {stabilisation!r}: the integer simulator "
                            "runs 'fixed-eps' (a constant divisor floor)")
        self.eps = float(graph.division.get("eps", 0.0))
        pops = {p.name: p for p in graph.populations}
        self.synapses: dict[str, list[Synapses]] = {p.name: [] for p in graph.populations}
        self.frac: dict[tuple[str, str], int] = {}
        for pop in graph.populations:
            if pop.role == "input":
                continue
            into = graph.projections_into(pop.name)
            # exc and sub share one grid (their currents are subtracted), div has its own
            groups = {"inh": {"exc": "num"}, "exc": {"exc": "num", "sub": "num", "div": "div"},
                      "readout": {"exc": "num", "sub": "num"}}[pop.role]
            for group in set(groups.values()):
                members = [p for p in into if groups.get(p.kind) == group]
                top = max((float(p.weight.max()) for p in members if p.weight.size), default=0.)
                self.frac[(pop.name, group)] = grid_frac(top)
            for proj in into:
                if proj.kind not in groups:
                    problems.append(f"projection {proj.name}: {proj.kind} into {pop.role}")
                    continue
                synapses = self._synapses(proj, pops[proj.source], pop,
                                          self.frac[(pop.name, groups[proj.kind])], problems)
                if synapses is not None:
                    self.synapses[pop.name].append(synapses)
            if pop.role == "inh" and pop.params.get("response", "identity") != "floor":
                problems.append(f"population {pop.name}: response "
                                f"{pop.params.get('response', 'identity')!r}; the integer "
                                "simulator runs 'floor' interneurons (integer spike counts)")
            if pop.role == "exc":
                tau = float(pop.params.get("tau", 0))
                log2_tau = int(round(np.log2(tau))) if tau >= 1 else -1
                if log2_tau < 0 or 2.0 ** log2_tau != tau:
                    problems.append(f"population {pop.name}: tau {tau} is not a power of two "
                                    "(the decay is a shift)")
        if problems:
            raise GraphError(f"graph {graph.name} cannot run as integers: " + "; ".join(problems))

    @staticmethod
    def _synapses(proj: Projection, source: Population, target: Population, frac: int,
                  problems: list[str]) -> Synapses | None:
        if proj.op == "dense":
            rows, cols = np.nonzero(proj.weight)
            indices, weight = np.stack([rows, cols], axis=1), proj.weight[rows, cols]
        elif proj.op == "sparse" and int(proj.attrs.get("pool", 1) or 1) == 1:
            indices, weight = np.asarray(proj.indices), np.asarray(proj.weight)
        else:
            problems.append(f"projection {proj.name}: op {proj.op!r} with pool "
                            f"{proj.attrs.get('pool', 1)}; quantize the graph first (all sparse)")
            return None
        levels = to_fixed(weight, frac)
        matrix = scipy.sparse.csr_matrix(
            (levels, (indices[:, 0], indices[:, 1])), shape=(target.size, source.size),
            dtype=np.int64)
        return Synapses(proj.name, proj.kind, proj.source, levels, np.asarray(indices), frac,
                        matrix)

    # ---- the pass
    def _current(self, pop: Population, kinds: tuple[str, ...], out: dict[str, np.ndarray],
                 steps: int, batch: int, sat: dict[str, int], peaks: dict[str, int]
                 ) -> np.ndarray:
        """Sum of ``kinds`` into ``pop`` as ``(T, B, n)`` int64 (sub negated), saturated."""
        total = np.zeros((steps, batch, pop.size), dtype=np.int64)
        for syn in self.synapses[pop.name]:
            if syn.kind not in kinds:
                continue
            src = out[syn.source].reshape(steps * batch, -1)
            part = np.asarray((syn.matrix @ src.T).T).reshape(steps, batch, pop.size)
            name = f"{pop.name}/I_{syn.kind}"
            part = saturate(part, ACCUMULATOR_BITS, True, name, sat, peaks)
            total = total - part if syn.kind == "sub" else total + part
        return total

    def run(self, x: Any, *, return_states: bool = False) -> IntegerResult:
        """Run a batch ``(B, *in_shape)`` or ``(B, T, *in_shape)`` (as the float executor)."""
        graph, steps = self.graph, self.graph.T
        sat: dict[str, int] = {}
        peaks: dict[str, int] = {}
        states: dict[str, dict[str, np.ndarray]] = {}
        spikes_in = self.host.encode_input(self.host.fold_input(x))
        spikes_in = np.broadcast_to(spikes_in, (steps, *spikes_in.shape[1:]))
        batch = spikes_in.shape[1]
        out: dict[str, np.ndarray] = {self.host.input.name: spikes_in.astype(np.int64)}
        counts = membrane = np.zeros((batch, 0), dtype=np.int64)
        for pop in graph.populations:
            if pop.role == "input":
                continue
            if pop.role == "inh":
                frac = self.frac[(pop.name, "num")]
                i_ie = self._current(pop, ("exc",), out, steps, batch, sat, peaks)
                theta = max(int(to_fixed(float(pop.params.get("theta_i", 1.0)), frac)), 1)
                # floor(relu(I_IE) / theta_I): the interneuron's spike count, a division by a
                # constant (a multiply-shift in hardware), exact here in every mode
                r_i = saturate(np.maximum(i_ie, 0) // theta, COUNT_BITS, False,
                               f"{pop.name}/r_I", sat, peaks)
                out[pop.name] = r_i
                if return_states:
                    states[pop.name] = {"current": i_ie, "output": r_i}
                continue
            frac_num = self.frac[(pop.name, "num")]
            i_num = saturate(self._current(pop, ("exc", "sub"), out, steps, batch, sat, peaks),
                             ACCUMULATOR_BITS, True, f"{pop.name}/I_num", sat, peaks)
            if pop.role == "readout":
                o = saturate(round_shift(i_num, frac_num - MEMBRANE_FRAC), ACCUMULATOR_BITS,
                             True, f"{pop.name}/o", sat, peaks)
                counts, membrane = self._readout(o, pop, sat, peaks)
                if return_states:
                    states[pop.name] = {"current": o, "counts": counts, "membrane": membrane}
                continue
            i_int, divisor = self._integrate(pop, i_num, frac_num, out, steps, batch, sat,
                                             peaks)
            log2_tau = int(round(np.log2(float(pop.params["tau"]))))
            theta = int(to_fixed(float(pop.params["v_threshold"]), MEMBRANE_FRAC))
            u = np.zeros((batch, pop.size), dtype=np.int64)
            spikes = np.zeros((steps, batch, pop.size), dtype=np.int64)
            for t in range(steps):
                h = saturate(lif_decay(u, log2_tau) + i_int[t], MEMBRANE_BITS, True,
                             f"{pop.name}/v", sat, peaks)
                spikes[t] = h >= theta
                u = h - spikes[t] * theta
            out[pop.name] = spikes
            if return_states:
                states[pop.name] = {"current": i_int, "output": spikes}
                if divisor is not None:  # D in units of 2**-self.frac[(name, "div")]
                    states[pop.name]["divisor"] = divisor
        return IntegerResult(counts, membrane, sat, peaks, states)

    def _integrate(self, pop: Population, i_num: np.ndarray, frac_num: int,
                   out: dict[str, np.ndarray], steps: int, batch: int, sat: dict[str, int],
                   peaks: dict[str, int]) -> tuple[np.ndarray, np.ndarray | None]:
        """Eq. 14 in integers: ``I_int = g_E N / D + b_E`` in Q.MEMBRANE_FRAC, and ``D``
        (``None`` without divisive inhibition)."""
        d = None
        has_div = any(s.kind == "div" for s in self.synapses[pop.name])
        if has_div:
            frac_div = self.frac[(pop.name, "div")]
            i_div = self._current(pop, ("div",), out, steps, batch, sat, peaks)
            # D = I_div + eps on the div grid, floored at 1 LSB (divisor never 0)
            eps = max(int(to_fixed(self.eps, frac_div)), 1)
            d = saturate(i_div + eps, DIVISOR_BITS, False, f"{pop.name}/D", sat, peaks)
            d = np.maximum(d, 1)
            # N / D in Q.MEMBRANE_FRAC: N (Q.frac_num) aligned by 2**(MEMBRANE_FRAC + F_div - F_num)
            dividend = saturate(round_shift(i_num, frac_num - MEMBRANE_FRAC - frac_div),
                                DIVIDEND_BITS, True, f"{pop.name}/N", sat, peaks)
            q = divide(dividend, d, self.division)
        else:
            q = round_shift(i_num, frac_num - MEMBRANE_FRAC)
        q = saturate(q, ACCUMULATOR_BITS, True, f"{pop.name}/q", sat, peaks)
        gain = pop.per_neuron("gain_e", 1.0)
        if not np.all(gain == 1.0):
            q = round_shift(q * to_fixed(gain, GAIN_FRAC), GAIN_FRAC)
        bias = to_fixed(pop.per_neuron("bias", 0.0), MEMBRANE_FRAC)
        return saturate(q + bias, ACCUMULATOR_BITS, True, f"{pop.name}/I_int", sat, peaks), d

    def _readout(self, o: np.ndarray, pop: Population, sat: dict[str, int],
                 peaks: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        steps, batch = o.shape[:2]
        if self.host.readout_mode == "current":
            total = saturate(o.sum(axis=0), MEMBRANE_BITS + 8, True, f"{pop.name}/sum", sat,
                             peaks)
            return total, np.zeros_like(total)
        theta = max(int(to_fixed(self.host.theta_out, MEMBRANE_FRAC)), 1)
        v = np.zeros((batch, pop.size), dtype=np.int64)
        counts = np.zeros((batch, pop.size), dtype=np.int64)
        for t in range(steps):
            v = saturate(v + o[t], MEMBRANE_BITS, True, f"{pop.name}/v", sat, peaks)
            n = np.maximum(v, 0) // theta
            counts = saturate(counts + n, COUNT_BITS, False, f"{pop.name}/counts", sat, peaks)
            v = v - n * theta
        return counts, v

    def predict(self, x: Any) -> np.ndarray:
        """Predicted classes: most readout spikes, ties by membrane (as the float executor)."""
        return self.run(x).predictions()


def accuracy(graph: EIGraph, x: Any, y: Any, division: str = "exact",
             batch_size: int = 256) -> tuple[float, dict[str, int]]:
    """Top-1 accuracy in percent and the total saturation counts per quantity."""
    sim = IntegerSimulator(graph, division)
    labels = np.asarray(y).reshape(-1)
    if len(labels) != len(x) or len(labels) == 0:
        raise ValueError(f"accuracy: {len(x)} inputs and {len(labels)} labels")
    correct, saturations = 0, {}
    for start in range(0, len(labels), batch_size):
        result = sim.run(x[start:start + batch_size])
        correct += int((result.predictions() == labels[start:start + batch_size]).sum())
        for key, value in result.saturations.items():
            saturations[key] = saturations.get(key, 0) + value
    return 100.0 * correct / len(labels), saturations
