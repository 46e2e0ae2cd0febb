"""The bit-accurate integer simulator of a quantized E-I graph (docs/integer-semantics.md).

It runs what ``eideploy.graph.execute`` runs (spec §3, Eqs. 9-15), with every quantity an integer
of a documented width: weights as unsigned ``WEIGHT_BITS`` levels on a per-dendrite grid
``2**-F``, currents in ``ACCUMULATOR_BITS`` signed accumulators, inhibitory spike counts in
``COUNT_BITS``, membranes in ``MEMBRANE_BITS`` with ``MEMBRANE_FRAC`` fractional bits. Every
clamp to a width is counted (``IntegerResult.saturations``) and the largest magnitude each
quantity reached is returned (``IntegerResult.peaks``), so a test can check the widths hold.
Eq. 14's division runs by one of ``eideploy.sim.division``'s methods (``exact``, ``lut:N``,
``shift``).

The circuit is the float executor's, function for function and in the same order:
``lif_multistep``, ``inhibitory_response``, ``stabilise``, ``ei_integrate``, ``ei_readout``,
``if_readout`` here mirror ``eideploy.graph.execute``'s functions of those names, and
:meth:`IntegerSimulator.run` walks the populations as :meth:`FloatExecutor.run
<eideploy.graph.execute.FloatExecutor.run>` does. Each function takes plain int64 arrays, the
population's integer constants and a :class:`Tally` that counts every clamp.

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

from ..graph.host import Host, readout_decision
from ..graph.ir import EIGraph, GraphError, Population, Projection
from . import _compiled
from .division import (
    DIVISOR_BITS,
    RECIPROCAL_BITS,
    SQRT2_FRACTION,
    divide,
    lut_reciprocal,
    parse_division,
    reciprocal_lut,
)

__all__ = ["IntegerSimulator", "IntegerResult", "Synapses", "Tally", "Constants", "accuracy",
           "lif_multistep", "inhibitory_response", "stabilise", "ei_integrate", "ei_readout",
           "if_readout", "to_fixed", "round_shift", "align", "lif_decay", "saturate",
           "WEIGHT_BITS", "ACCUMULATOR_BITS",
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


def align(x: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """:func:`round_shift` onto a signed ``bits``-wide quantity, a left shift that cannot wrap:
    a value whose shifted magnitude would leave the width is first clipped to the smallest
    magnitude that still leaves it, so the following :func:`saturate` clamps it to the exact
    limit and counts it (an int64 shift of the raw value could wrap past 63 bits)."""
    if shift > 0:
        return round_shift(x, shift)
    left = -shift
    high = (1 << (bits - 1)) - 1
    if left >= bits - 1:  # every non-zero value leaves the width
        return np.sign(x) * (np.int64(1) << bits)
    # the smallest magnitudes that leave [-(high + 1), high] once shifted, on either side
    above, below = (high >> left) + 1, ((high + 1) >> left) + 1
    return np.clip(x, -below, above) << left


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
    over = 0
    if x.size:
        lo, hi = int(x.min()), int(x.max())
        if lo < low or hi > high:
            over = int(np.count_nonzero((x > high) | (x < low)))
            x = np.clip(x, low, high)
            lo, hi = (min(max(v, int(low)), int(high)) for v in (lo, hi))
        peaks[name] = max(peaks.get(name, 0), abs(lo), abs(hi))
    counts[name] = counts.get(name, 0) + over
    return x


def grid_frac(max_weight: float) -> int:
    """The finest grid ``2**-F`` on which ``max_weight`` is a ``WEIGHT_BITS``-bit level."""
    if max_weight <= 0:
        return MAX_FRAC
    frac = int(np.floor(np.log2(((1 << WEIGHT_BITS) - 1) / max_weight)))
    while frac > -MAX_FRAC and to_fixed(max_weight, frac) >= (1 << WEIGHT_BITS):
        frac -= 1  # the float log2 may land one too high
    return min(frac, MAX_FRAC)


# --------------------------------------------------------------------------- the circuit
# The integer twins of ``eideploy.graph.execute``'s functions, with the same names, in the same
# order (docs/integer-semantics.md §3). Every clamp to a width is counted in a :class:`Tally`
# under ``"{population}/{quantity}"``.
@dataclass
class Tally:
    """Saturation counts and peak magnitudes of one run, by quantity (:func:`saturate`)."""

    saturations: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)

    def clamp(self, x: np.ndarray, bits: int, signed: bool, name: str) -> np.ndarray:
        return saturate(x, bits, signed, name, self.saturations, self.peaks)

    def observe(self, lo: float, hi: float, bits: int, signed: bool, name: str) -> None:
        """What :meth:`clamp` records for a quantity of smallest / largest value ``lo`` / ``hi``
        that needs no clamp; raises :class:`_Clamped` where it would need one (the fused pass
        then hands the slice to the reference functions)."""
        high = (1 << (bits - 1 if signed else bits)) - 1
        low = -high - 1 if signed else 0
        lo, hi = int(lo), int(hi)
        if lo < low or hi > high:
            raise _Clamped(name)
        self.saturations[name] = self.saturations.get(name, 0)
        self.peaks[name] = max(self.peaks.get(name, 0), abs(lo), abs(hi))

    def merge(self, other: Tally) -> None:
        for name, count in other.saturations.items():
            self.saturations[name] = self.saturations.get(name, 0) + count
        for name, peak in other.peaks.items():
            self.peaks[name] = max(self.peaks.get(name, 0), peak)


class _Clamped(Exception):
    """A fused pass met a value its width would clamp (:meth:`Tally.observe`)."""


@dataclass(frozen=True)
class Constants:
    """One population's constants as integers, made once from the quantized graph.

    ``frac_num`` / ``frac_div``: the grids ``2**-F`` of its I_EE and I_sub / its I_div synapses
    (``frac_div`` None without SHUNT input); ``theta``: its threshold on its own scale (theta_I
    on the ``num`` grid, v_threshold and theta_out in Q.MEMBRANE_FRAC); ``eps``: the divisor
    floor in LSB of the ``div`` grid (>= 1); ``gain``: g_E in Q.GAIN_FRAC (None when every g_E
    is 1); ``bias``: b_E in Q.MEMBRANE_FRAC (None when 0); ``log2_tau``: the LIF's decay shift.
    """

    name: str
    frac_num: int
    frac_div: int | None = None
    theta: int = 1
    eps: int = 1
    gain: np.ndarray | None = None
    bias: np.ndarray | None = None
    log2_tau: int = 0


def lif_multistep(current: np.ndarray, log2_tau: int, theta: int, tally: Tally,
                  name: str) -> np.ndarray:
    """Excitatory LIF over ``(T, B, n)`` currents in Q.MEMBRANE_FRAC (docs §3.3):
    ``h[t] = sat(decay(u[t-1]) + I[t])`` with ``decay(u) = u - ceil(u / 2**log2_tau)``
    (:func:`lif_decay`), ``s[t] = h[t] >= theta``, soft reset ``u[t] = h[t] - theta s[t]``,
    ``u[-1] = 0``. Spikes as int64 0/1."""
    steps = current.shape[0]
    u = np.zeros(current.shape[1:], dtype=np.int64)
    spikes = np.zeros(current.shape, dtype=np.int64)
    for t in range(steps):
        h = tally.clamp(lif_decay(u, log2_tau) + current[t], MEMBRANE_BITS, True, f"{name}/v")
        spikes[t] = h >= theta
        u = h - spikes[t] * theta
    return spikes


def inhibitory_response(i_ie: np.ndarray, theta_i: int, tally: Tally, name: str) -> np.ndarray:
    """``r_I = floor(relu(I_IE) / theta_I)``: the interneuron's spike count, a division by a
    constant (a multiply-shift in hardware), exact in every division mode; ``COUNT_BITS``."""
    return tally.clamp(np.maximum(i_ie, 0) // theta_i, COUNT_BITS, False, f"{name}/r_I")


def stabilise(i_div: np.ndarray, eps: int, tally: Tally, name: str) -> np.ndarray:
    """Stab() of ``fixed-eps`` (§5.1): ``D = I_div + eps`` on the div grid, ``eps >= 1``;
    ``I_div >= 0`` (unsigned weights and counts), so ``D >= 1`` after the ``DIVISOR_BITS``
    clamp: division never sees 0."""
    return tally.clamp(i_div + eps, DIVISOR_BITS, False, f"{name}/D")


def ei_integrate(i_ee: np.ndarray, i_sub: np.ndarray | int, i_div: np.ndarray | None,
                 c: Constants, division: str, tally: Tally
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Eq. 14 in integers: ``I_int = g_E (I_EE - I_sub) / Stab(I_div) + b_E`` in
    Q.MEMBRANE_FRAC, and the divisor ``D`` (None without divisive inhibition).

    ``N = I_EE - I_sub`` (Q.frac_num) is aligned by ``2**(MEMBRANE_FRAC + F_div - F_num)`` so
    that ``N / D`` comes out in Q.MEMBRANE_FRAC, and divided by ``division``
    (``eideploy.sim.division``)."""
    name = c.name
    i_num = tally.clamp(i_ee - i_sub, ACCUMULATOR_BITS, True, f"{name}/I_num")
    d = None
    if i_div is not None and c.frac_div is not None:
        d = stabilise(i_div, c.eps, tally, name)
        dividend = tally.clamp(align(i_num, c.frac_num - MEMBRANE_FRAC - c.frac_div,
                                     DIVIDEND_BITS), DIVIDEND_BITS, True, f"{name}/N")
        q = divide(dividend, d, division, check=False)  # D clamped to [1, 2**31)
    else:
        q = align(i_num, c.frac_num - MEMBRANE_FRAC, ACCUMULATOR_BITS)
    q = tally.clamp(q, ACCUMULATOR_BITS, True, f"{name}/q")
    if c.gain is not None:
        q = round_shift(q * c.gain, GAIN_FRAC)
    if c.bias is not None:
        q = q + c.bias
    return tally.clamp(q, ACCUMULATOR_BITS, True, f"{name}/I_int"), d


def ei_readout(i_ee: np.ndarray, i_sub: np.ndarray | int, frac_num: int, tally: Tally,
               name: str) -> np.ndarray:
    """Output layer: ``o = I_EE - I_sub`` (no division, no gains, no LIF; spec §3), moved from
    the grid ``2**-frac_num`` to Q.MEMBRANE_FRAC."""
    i_num = tally.clamp(i_ee - i_sub, ACCUMULATOR_BITS, True, f"{name}/I_num")
    return tally.clamp(align(i_num, frac_num - MEMBRANE_FRAC, ACCUMULATOR_BITS),
                       ACCUMULATOR_BITS, True, f"{name}/o")


def if_readout(o_seq: np.ndarray, theta: int, tally: Tally, name: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """Non-leaky IF readout with soft reset over ``(T, B, classes)``: ``(counts, membrane)``,
    ``v = sat(v + o[t])``, ``n = floor(relu(v) / theta)``, ``counts += n``, ``v -= n theta``."""
    v = np.zeros(o_seq.shape[1:], dtype=np.int64)
    counts = np.zeros(o_seq.shape[1:], dtype=np.int64)
    for t in range(o_seq.shape[0]):
        v = tally.clamp(v + o_seq[t], MEMBRANE_BITS, True, f"{name}/v")
        n = np.maximum(v, 0) // theta
        counts = tally.clamp(counts + n, COUNT_BITS, False, f"{name}/counts")
        v = v - n * theta
    return counts, v


#: Largest weight matrix (target x source elements) multiplied densely; larger ones stay sparse.
DENSE_LIMIT = 1 << 22


@dataclass
class Synapses:
    """One projection as integers: ``levels`` (nnz,) unsigned on the grid ``2**-frac``, and
    the (target, source) ``indices``; ``matrix`` the int64 CSR (target x source).

    :meth:`apply` sums ``levels x source outputs`` per target. Every partial sum of that
    product is an integer no larger than ``max(source) * row_bound``; where that bound is below
    ``2**24`` (``2**53``) float32 (float64) arithmetic represents every partial sum exactly, in
    any order, so the product runs as a float BLAS multiply and converts back to the identical
    integers; above ``2**53`` it runs in int64."""

    projection: str
    kind: str
    source: str
    levels: np.ndarray
    indices: np.ndarray
    frac: int
    matrix: scipy.sparse.csr_matrix
    row_bound: int = 0
    _float: dict[type, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        sums = np.asarray(abs(self.matrix).sum(axis=1)).ravel()
        self.row_bound = int(sums.max()) if sums.size else 0

    def _weights(self, dtype: type) -> tuple[np.ndarray | None, Any]:
        """``(sources, weights)``: the float weights (source x target) of the sources that have
        a synapse, and those sources' indices (None: all of them, or most). A projection from a
        few sources of a wide population (a divisive one, often) multiplies only their
        columns."""
        if dtype not in self._float:
            rows, cols = self.matrix.shape
            used = np.unique(self.matrix.indices)
            sources = used if len(used) <= cols // 2 else None
            matrix = self.matrix.astype(dtype).T.tocsr()
            if sources is not None:
                matrix = matrix[sources]
            self._float[dtype] = (sources, matrix.toarray() if rows * cols <= DENSE_LIMIT
                                  else matrix)
        return self._float[dtype]

    def apply(self, src: SourceOutput) -> np.ndarray:
        """A source's ``(N, n_source)`` outputs -> ``(N, n_target)`` int64 summed currents."""
        product = self.product(src)
        if product is None:
            return np.asarray((self.matrix @ src.values.T).T)
        return product.astype(np.int64)

    def product(self, src: SourceOutput) -> np.ndarray | None:
        """The summed currents as exact integers in a float32 / float64 array (class doc), or
        None where a partial sum may reach ``2**53`` (then only int64 is exact)."""
        bound = src.top * self.row_bound
        if bound >= 1 << 53:
            return None
        dtype = np.float32 if bound < 1 << 24 else np.float64
        sources, weights = self._weights(dtype)
        values = src.as_float(dtype)
        if sources is not None:
            values = values[:, sources]
        return np.asarray(values @ weights)


class SourceOutput:
    """A population's integer outputs ``(N, n)``, their largest magnitude, and their float
    copies made once for every projection that reads them (:meth:`Synapses.apply`).

    ``values`` may hold the integers in any numeric dtype (the host's spikes come as floats);
    the int64 copy and each float copy are made only when a product asks for them."""

    def __init__(self, values: np.ndarray, top: int | None = None) -> None:
        if top is None:  # given: the caller knows its integers and their largest magnitude
            if values.dtype.kind not in "iu" and not np.array_equal(values, np.trunc(values)):
                values = values.astype(np.int64)  # fractions truncate, as the int64 cast did
            top = max(int(values.max()), -int(values.min())) if values.size else 0
        self.raw = values
        self.top = top
        self._float: dict[type, np.ndarray] = {}
        self._int: np.ndarray | None = None

    @property
    def values(self) -> np.ndarray:
        if self._int is None:
            self._int = (self.raw if self.raw.dtype == np.int64
                         else self.raw.astype(np.int64))
        return self._int

    def as_float(self, dtype: type) -> np.ndarray:
        if dtype not in self._float:
            self._float[dtype] = (self.raw if self.raw.dtype == dtype
                                  else self.raw.astype(dtype))
        return self._float[dtype]


@dataclass
class IntegerResult:
    """The readout's spike ``counts`` and ``membrane`` (B, readout neurons) in integers (membrane in
    Q.MEMBRANE_FRAC; for a ``current`` readout, counts are the summed currents in the same
    format and the membrane 0), the ``saturations`` per quantity and the ``peaks``
    (largest magnitude reached) per quantity."""

    counts: np.ndarray
    membrane: np.ndarray
    saturations: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    classes: int | None = None  # several readout neurons per class: graph.readout["classes"]

    def predictions(self) -> np.ndarray:
        return readout_decision(self.counts, self.membrane, self.classes)


class IntegerSimulator:
    """A quantized graph turned into integers once, then run on batches (module doc).

    ``synapses[population]`` holds its projections as integers, ``frac[(population, "num" |
    "div")]`` the grid exponent of its I_EE / I_sub (``num``) and I_div (``div``) synapses,
    ``constants[population]`` its other constants; ``eps`` is the graph's divisor floor.
    """

    def __init__(self, graph: EIGraph, division: str = "exact") -> None:
        parse_division(division)
        self.division = division
        self.graph = graph
        self.host = Host(graph)  # input encoding only: the host's spikes, bit for bit
        if self.host.encoding == "direct":
            raise GraphError(f"graph {graph.name}: the integer simulator takes spikes ('if', "
                             "'bernoulli' or 'spikes' input encoding), not analog 'direct' input")
        problems: list[str] = []
        settings = graph.division_settings
        if settings.stabilisation != "fixed-eps":
            problems.append(f"division stabilisation {settings.stabilisation!r}: the integer "
                            "simulator runs 'fixed-eps' (a constant divisor floor)")
        self.eps = settings.eps
        self.synapses: dict[str, list[Synapses]] = {p.name: [] for p in graph.populations}
        self.frac: dict[tuple[str, str], int] = {}
        self.constants: dict[str, Constants] = {}
        for pop in graph.populations:
            if pop.role != "input":
                self._prepare(pop, problems)
        if problems:
            raise GraphError(f"graph {graph.name} cannot run as integers: " + "; ".join(problems))

    # ---- made once: grids, synapses, constants
    def _prepare(self, pop: Population, problems: list[str]) -> None:
        """``pop``'s grids (exc and sub share one, their currents are subtracted; div has its
        own), its synapses as integer levels on them, and its :class:`Constants`."""
        into = self.graph.projections_into(pop.name)
        groups = _GRID_OF_KIND[pop.role]
        for group in set(groups.values()):
            members = [p for p in into if groups.get(p.kind) == group]
            top = max((float(p.weight.max()) for p in members if p.weight.size), default=0.)
            self.frac[(pop.name, group)] = grid_frac(top)
        for proj in into:
            if proj.kind not in groups:
                problems.append(f"projection {proj.name}: {proj.kind} into {pop.role}")
                continue
            synapses = _synapses(proj, self.graph.population(proj.source), pop,
                                 self.frac[(pop.name, groups[proj.kind])], problems)
            if synapses is not None:
                self.synapses[pop.name].append(synapses)
        self.constants[pop.name] = self._constants(pop, problems)

    def _constants(self, pop: Population, problems: list[str]) -> Constants:
        frac_num = self.frac[(pop.name, "num")]
        if pop.role == "inh":
            if pop.params.get("response", "identity") != "floor":
                problems.append(f"population {pop.name}: response "
                                f"{pop.params.get('response', 'identity')!r}; the integer "
                                "simulator runs 'floor' interneurons (integer spike counts)")
            theta_i = max(int(to_fixed(float(pop.params.get("theta_i", 1.0)), frac_num)), 1)
            return Constants(pop.name, frac_num, theta=theta_i)
        if pop.role == "readout":
            theta_out = max(int(to_fixed(self.host.theta_out, MEMBRANE_FRAC)), 1)
            return Constants(pop.name, frac_num, theta=theta_out)
        if "v_threshold" not in pop.params:
            problems.append(f"population {pop.name}: LIF parameter v_threshold missing")
        tau = float(pop.params.get("tau", 0))
        log2_tau = int(round(np.log2(tau))) if tau >= 1 else -1
        if log2_tau < 0 or 2.0 ** log2_tau != tau:
            problems.append(f"population {pop.name}: tau {tau} is not a power of two "
                            "(the decay is a shift)")
        frac_div = (self.frac[(pop.name, "div")]
                    if any(s.kind == "div" for s in self.synapses[pop.name]) else None)
        gain = pop.per_neuron("gain_e", 1.0)
        bias = to_fixed(pop.per_neuron("bias", 0.0), MEMBRANE_FRAC)
        return Constants(
            pop.name, frac_num, frac_div,
            theta=int(to_fixed(float(pop.params.get("v_threshold", 0.0)), MEMBRANE_FRAC)),
            # D = I_div + eps on the div grid, floored at 1 LSB (the divisor is never 0)
            eps=max(int(to_fixed(self.eps, frac_div)), 1) if frac_div is not None else 1,
            gain=None if np.all(gain == 1.0) else to_fixed(gain, GAIN_FRAC),
            bias=bias if bias.any() else None, log2_tau=max(log2_tau, 0))

    # ---- the pass
    def _currents(self, pop: Population, sources: dict[str, SourceOutput], steps: int,
                  batch: int, tally: Tally
                  ) -> tuple[np.ndarray, np.ndarray | int, np.ndarray | None]:
        """``(I_EE, I_sub, I_div)`` into ``pop``, each ``(T, B, n)`` int64, the sum of its
        projections of that kind, each projection clamped to ``ACCUMULATOR_BITS``
        (docs §3.2). No excitatory input: zeros; no GABA: 0; no SHUNT: None."""
        totals: dict[str, np.ndarray] = {}
        for syn in self.synapses[pop.name]:
            part = syn.apply(sources[syn.source]).reshape(steps, batch, pop.size)
            part = tally.clamp(part, ACCUMULATOR_BITS, True, f"{pop.name}/I_{syn.kind}")
            if syn.kind in totals:
                totals[syn.kind] += part
            else:
                totals[syn.kind] = part
        i_ee = totals.get("exc")
        if i_ee is None:
            i_ee = np.zeros((steps, batch, pop.size), dtype=np.int64)
        return i_ee, totals.get("sub", 0), totals.get("div")

    def run(self, x: Any, *, return_states: bool = False) -> IntegerResult:
        """Run a batch ``(B, *in_shape)`` or ``(B, T, *in_shape)``; the same steps, in the same
        order, as :meth:`eideploy.graph.execute.FloatExecutor.run`, in integers.

        The host encodes the whole batch at once (a Bernoulli encoding draws in batch order);
        the network then runs on slices of :meth:`chunk` samples. Every sample's arithmetic is
        its own, so the integers are those of one whole-batch pass, while each population's
        temporaries stay in the processor's cache (about 2x faster than whole-batch passes, which
        stream every intermediate array through memory)."""
        steps = self.graph.T
        tally = Tally()
        spikes_in = self.host.spikes(x)
        spikes_in = np.broadcast_to(spikes_in, (steps, *spikes_in.shape[1:]))
        batch = spikes_in.shape[1]
        size = self.chunk()
        parts = [self._slice(spikes_in[:, start:start + size], tally, return_states)
                 for start in range(0, batch, size)] or [
                     self._run_slice(spikes_in, tally, return_states)]
        counts = np.concatenate([p[0] for p in parts])
        membrane = np.concatenate([p[1] for p in parts])
        states: dict[str, dict[str, np.ndarray]] = {}
        if return_states:  # (T, B, n) along the batch axis 1, (B, n) along 0
            for name, state in parts[0][2].items():
                states[name] = {key: np.concatenate([p[2][name][key] for p in parts],
                                                    axis=1 if value.ndim == 3 else 0)
                                for key, value in state.items()}
        return IntegerResult(counts, membrane, tally.saturations, tally.peaks, states,
                             self.host.classes)

    #: Elements ``T x samples x neurons`` of the widest population per slice of the batch.
    SLICE_ELEMENTS = 1 << 16

    def chunk(self) -> int:
        """Samples per slice of the batch (:meth:`run`): ``SLICE_ELEMENTS`` over the widest
        population's ``T x neurons``, at least one."""
        widest = max((p.size for p in self.graph.populations), default=1)
        return max(1, self.SLICE_ELEMENTS // (self.graph.T * max(widest, 1)))

    #: Run slices by the fused pass (:meth:`_run_slice_fused`); False: the reference functions.
    FUSED = True

    def _slice(self, spikes_in: np.ndarray, tally: Tally, return_states: bool
               ) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """One slice by the fused pass where it applies and no value of the slice needs a clamp,
        else by the reference functions (:meth:`_run_slice`): the same integers either way."""
        if self.FUSED and self.fusable:
            local = Tally()
            try:
                result = self._run_slice_fused(spikes_in, local, return_states)
            except _Clamped:
                pass
            else:
                tally.merge(local)
                return result
        return self._run_slice(spikes_in, tally, return_states)

    @property
    def fusable(self) -> bool:
        """Whether the fused pass covers this graph: every g_E 1 (quantized graphs fold it into
        the weights), positive thresholds, non-empty populations."""
        return all(c.gain is None and c.theta >= 1 for c in self.constants.values()) and all(
            p.size > 0 for p in self.graph.populations)

    def _run_slice(self, spikes_in: np.ndarray, tally: Tally, return_states: bool
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """The populations in graph order on the host's ``(T, B, ...)`` spikes of one slice."""
        graph, steps = self.graph, self.graph.T
        states: dict[str, dict[str, np.ndarray]] = {}
        batch = spikes_in.shape[1]
        sources = {self.host.input.name: SourceOutput(spikes_in.reshape(steps * batch, -1))}
        counts = membrane = np.zeros((batch, 0), dtype=np.int64)
        for pop in graph.populations:
            if pop.role == "input":
                continue
            c = self.constants[pop.name]
            i_ee, i_sub, i_div = self._currents(pop, sources, steps, batch, tally)
            if pop.role == "inh":
                current = i_ee
                output = inhibitory_response(i_ee, c.theta, tally, pop.name)
                state = {"current": current, "output": output}
            elif pop.role == "readout":
                current = ei_readout(i_ee, i_sub, c.frac_num, tally, pop.name)
                if self.host.readout_mode == "spiking":
                    counts, membrane = if_readout(current, c.theta, tally, pop.name)
                else:  # the summed current in Q.MEMBRANE_FRAC: T times the float logits
                    counts = tally.clamp(current.sum(axis=0), MEMBRANE_BITS + 8, True,
                                         f"{pop.name}/sum")
                    membrane = np.zeros_like(counts)
                state = {"current": current, "counts": counts, "membrane": membrane}
                output = None  # the readout's spikes leave the chip: no source
            else:
                current, divisor = ei_integrate(i_ee, i_sub, i_div, c, self.division, tally)
                output = lif_multistep(current, c.log2_tau, c.theta, tally, pop.name)
                state = {"current": current, "output": output}
                if divisor is not None:  # D in units of 2**-self.frac[(name, "div")]
                    state["divisor"] = divisor
            if output is not None:
                sources[pop.name] = SourceOutput(output.reshape(steps * batch, -1))
            if return_states:
                states[pop.name] = state
        return counts, membrane, states

    def _run_slice_fused(self, spikes_in: np.ndarray, tally: Tally, return_states: bool
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """:meth:`_run_slice` for a slice in which no quantity reaches its width: the same
        integers, in fewer passes over memory (docs/integer-semantics.md §8).

        Every quantity is held as exact integers in the narrowest array type that represents
        all of its values (float32 below ``2**24``, float64 below ``2**53``, int32 for the
        membranes), the synaptic sums come from one float product each
        (:meth:`Synapses.product`), and each width is checked on the smallest and largest value
        (:meth:`Tally.observe`, which also records the peaks; a monotone step's extremes are
        those of its input's). A value its width would clamp raises :class:`_Clamped` before
        anything inexact is computed, and the slice runs by the reference functions instead."""
        graph, steps = self.graph, self.graph.T
        batch = spikes_in.shape[1]
        sources = {self.host.input.name: SourceOutput(spikes_in.reshape(steps * batch, -1))}
        states: dict[str, dict[str, np.ndarray]] = {}
        counts = membrane = np.zeros((batch, 0), dtype=np.int64)
        for pop in graph.populations:
            if pop.role == "input":
                continue
            c = self.constants[pop.name]
            parts = _fused_currents(pop, self.synapses[pop.name], sources, tally)
            if pop.role == "inh":
                current, output, top = _fused_inhibitory(parts, pop, c, tally)
                state = {"current": current, "output": output}
            elif pop.role == "readout":
                current, counts, membrane = _fused_readout(
                    parts, pop, c, steps, self.host.readout_mode, tally)
                state = {"current": current, "counts": counts, "membrane": membrane}
                output = None
            else:
                current, divisor, output, top = _fused_excitatory(
                    parts, pop, c, steps, self.division, tally)
                state = {"current": current, "output": output}
                if divisor is not None:
                    state["divisor"] = divisor
            if output is not None:
                sources[pop.name] = SourceOutput(output, top)
            if return_states:  # as the reference returns them: int64, (T, B, n)
                states[pop.name] = {
                    key: (value.astype(np.int64) if value.ndim == 1 or key in ("counts",
                                                                               "membrane")
                          else value.reshape(steps, batch, -1).astype(np.int64))
                    for key, value in state.items()}
        return counts, membrane, states

    def predict(self, x: Any) -> np.ndarray:
        """Predicted classes: most readout spikes, ties by membrane (as the float executor)."""
        return self.run(x).predictions()


#: Which grid each projection kind into a role is summed on (``num``: I_EE and I_sub, which
#: are subtracted; ``div``: I_div); a kind not listed cannot enter that role.
_GRID_OF_KIND = {"inh": {"exc": "num"}, "exc": {"exc": "num", "sub": "num", "div": "div"},
                 "readout": {"exc": "num", "sub": "num"}}


def _synapses(proj: Projection, source: Population, target: Population, frac: int,
              problems: list[str]) -> Synapses | None:
    """``proj`` as integer levels on the grid ``2**-frac`` (dense or unpooled sparse only)."""
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
    return Synapses(proj.name, proj.kind, proj.source, levels, np.asarray(indices), frac, matrix)


# --------------------------------------------------------------------------- the fused pass
# The circuit above for slices with no clamp (IntegerSimulator._run_slice_fused). Arrays are
# (T*B, n), time-major; every value is an exact integer held in a float or int32 array.
def _extremes(x: np.ndarray) -> tuple[float, float]:
    return float(x.min()), float(x.max())


def _fused_currents(pop: Population, synapses: list[Synapses],
                    sources: dict[str, SourceOutput], tally: Tally
                    ) -> dict[str, tuple[np.ndarray, float, float]]:
    """``{kind: (summed currents, smallest, largest)}`` of ``pop``'s projections, each
    projection checked against ``ACCUMULATOR_BITS`` as :meth:`IntegerSimulator._currents`
    clamps it; two of one kind add up in float64 (exact: each is below ``2**31``)."""
    totals: dict[str, tuple[np.ndarray, float, float]] = {}
    for syn in synapses:
        part = syn.product(sources[syn.source])
        if part is None:
            raise _Clamped(f"{pop.name}/I_{syn.kind}")  # a sum of 2**53 or more
        lo, hi = _extremes(part)
        tally.observe(lo, hi, ACCUMULATOR_BITS, True, f"{pop.name}/I_{syn.kind}")
        if syn.kind in totals:
            part = np.add(totals[syn.kind][0], part, dtype=np.float64)
            lo, hi = _extremes(part)
        totals[syn.kind] = (part, lo, hi)
    return totals


def _exact_floor_divide(x: np.ndarray, theta: int) -> np.ndarray:
    """``floor(x / theta)`` of non-negative integers ``x`` in place, for an integer ``theta >=
    1``: a power of two scales exactly, else the float quotient's floor is exact where ``x +
    theta`` stays below the float's ``2**(mantissa + 1)`` (its correctly rounded value then
    cannot reach the next integer: the gap is at least ``1 / theta``)."""
    if theta & (theta - 1) == 0:
        np.multiply(x, 1.0 / theta, out=x)
    else:
        np.divide(x, theta, out=x)
    return np.floor(x, out=x)


def _fused_inhibitory(parts: dict[str, tuple[np.ndarray, float, float]], pop: Population,
                      c: Constants, tally: Tally) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`inhibitory_response`: ``(I_IE, r_I as float32, largest r_I)``."""
    i_ie, lo, hi = parts.get("exc", (None, 0.0, 0.0))
    if i_ie is None:
        raise _Clamped(f"{pop.name}: no input")  # a corner the reference handles
    r_lo, r_hi = max(int(lo), 0) // c.theta, max(int(hi), 0) // c.theta  # monotone
    tally.observe(r_lo, r_hi, COUNT_BITS, False, f"{pop.name}/r_I")
    exact = 1 << (24 if i_ie.dtype == np.float32 else 53)
    r = np.maximum(i_ie, 0, dtype=np.float32 if max(hi, 0) + c.theta < exact else np.float64)
    r = _exact_floor_divide(r, c.theta)
    return i_ie, r.astype(np.float32, copy=False), r_hi


def _aligned(x: np.ndarray, shift: int, dtype: type = np.float64) -> np.ndarray:
    """:func:`round_shift` of the integers ``x`` as a new float array of ``dtype``: exact
    where the result lies below the float's ``2**(mantissa + 1)``, since powers of two scale
    exactly and the rounding adds 1/2 to a value far below it (``trunc(x + sign(x) / 2)`` is
    round half away from zero)."""
    scaled = x.astype(dtype)
    np.multiply(scaled, 2.0 ** -shift, out=scaled)
    return scaled if shift <= 0 else _round_half_away(scaled)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """``trunc(x + copysign(1/2, x))`` in place: ``sign(x) floor(|x| + 1/2)``."""
    half = np.copysign(0.5, x).astype(x.dtype, copy=False)
    np.add(x, half, out=x)
    return np.trunc(x, out=x)


def _align_int(x: int, shift: int, bits: int) -> int:
    """:func:`align` of one Python integer (the extremes of a quantity: align is monotone)."""
    if shift > 0:
        magnitude = (abs(x) + (1 << (shift - 1))) >> shift
        return magnitude if x >= 0 else -magnitude
    left = -shift
    high = (1 << (bits - 1)) - 1
    if left >= bits - 1:
        return 0 if x == 0 else (1 << bits) * (1 if x > 0 else -1)
    return min(max(x, -(((high + 1) >> left) + 1)), (high >> left) + 1) << left


#: IEEE formats as (float, int of its width, fraction bits, exponent bias): a positive float's
#: bits read as that int are ``(exponent + bias) << fraction | fraction field``.
_FORMATS = {np.dtype(np.float32): (np.float32, np.int32, 23, 127),
            np.dtype(np.float64): (np.float64, np.int64, 52, 1023)}


def _divisor_scale(d: np.ndarray, method: str, bits: int, left: int) -> np.ndarray:
    """``recip * 2**(left - s)`` per divisor, as the floats ``d`` are (exact): ``shift``'s
    nearest power of two ``2**-k`` or ``lut:N``'s table entry over ``2**(P + k)``
    (``eideploy.sim.division``), read from the float's own exponent and fraction fields, which
    hold ``d = 2**k (1 + f)`` exactly (the leading-zero count of :func:`~eideploy.sim.division.
    normalise`). ``d`` is float32 only where it lies below ``2**24``."""
    real, integer, fraction_bits, bias = _FORMATS[d.dtype]
    field = d.view(integer)
    exponent = field >> fraction_bits  # k + bias
    mask = (1 << fraction_bits) - 1
    if method == "shift":
        # m >= sqrt 2 (never equal) where the fraction field exceeds floor((sqrt 2 - 1) 2**F)
        sqrt2 = SQRT2_FRACTION >> (52 - fraction_bits)
        up = np.bitwise_and(field, mask) > sqrt2
        power = np.subtract(2 * bias + left, exponent, out=exponent)
        np.subtract(power, up, out=power)  # the exponent field of 2**(left - k)
        return (power << fraction_bits).view(real)
    index = np.right_shift(field, fraction_bits - bits)
    np.bitwise_and(index, (1 << bits) - 1, out=index)
    recip = np.take(reciprocal_lut(bits).astype(real), index)
    power = np.subtract(2 * bias + left - RECIPROCAL_BITS, exponent, out=exponent)
    return np.multiply(recip, (power << fraction_bits).view(real), out=recip)


def _fused_divide(i_num: np.ndarray, d: np.ndarray, shift: int, division: str) -> np.ndarray:
    """``divide(align(I_num, shift), D)`` in float64, where ``|N| < 2**45`` and ``1 <= D <
    2**31`` (checked by the caller); float32 ``d`` lies below ``2**24``. ``exact``:
    ``trunc((N + sign(N) D/2) / D)``, whose float quotient is ``sign(N)`` times that of ``(2|N|
    + D) / (2D)`` and is exactly truncated because ``2|N| + 3D < 2**53``
    (:func:`_exact_floor_divide`). ``shift`` / ``lut``: ``N recip 2**-s`` rounded half away
    from zero, with ``N recip`` formed from ``|I_num| < 2**31`` times a reciprocal below
    ``2**18`` (exact below ``2**53``) and the alignment folded into the power of two
    (:func:`_divisor_scale`)."""
    method, bits, newton = parse_division(division)
    if method == "exact":
        n = _aligned(i_num, shift)
        d = d.astype(np.float64, copy=False)
        half = np.multiply(d, 0.5)
        np.copysign(half, n, out=half)
        np.add(n, half, out=n)
        np.divide(n, d, out=n)
        return np.trunc(n, out=n)
    n, left = (i_num.astype(np.float64), -shift) if shift <= 0 else (_aligned(i_num, shift), 0)
    if newton:  # the Newton step's products: in int64, as the division module runs them
        recip, power = lut_reciprocal(d.astype(np.int64), bits, newton)
        np.multiply(n, recip, out=n)
        np.ldexp(n, (left - power).astype(np.int32), out=n)
    else:
        np.multiply(n, _divisor_scale(d, method, bits, left).astype(np.float64), out=n)
    return _round_half_away(n)


def _aligned_extremes(lo: float, hi: float, shift: int, bits: int) -> tuple[int, int]:
    """:func:`align` of a quantity's extremes: its aligned extremes (align is monotone)."""
    return _align_int(int(lo), shift, bits), _align_int(int(hi), shift, bits)


def _fused_numerator(parts: dict[str, tuple[np.ndarray, float, float]], pop: Population,
                     tally: Tally) -> tuple[np.ndarray, float, float]:
    """``I_num = I_EE - I_sub`` (float32 where both magnitudes sum below ``2**24``)."""
    if "exc" not in parts:
        raise _Clamped(f"{pop.name}: no excitatory input")  # a corner the reference handles
    i_ee, ee_lo, ee_hi = parts["exc"]
    if "sub" in parts:
        i_sub, sub_lo, sub_hi = parts["sub"]
        wide = max(abs(ee_lo), abs(ee_hi)) + max(abs(sub_lo), abs(sub_hi)) >= 1 << 24
        i_num = np.subtract(i_ee, i_sub, dtype=np.float64 if wide or i_ee.dtype != i_sub.dtype
                            else i_ee.dtype)
        lo, hi = _extremes(i_num)
    else:
        i_num, lo, hi = i_ee, ee_lo, ee_hi
    tally.observe(lo, hi, ACCUMULATOR_BITS, True, f"{pop.name}/I_num")
    return i_num, lo, hi


def _fused_excitatory(parts: dict[str, tuple[np.ndarray, float, float]], pop: Population,
                      c: Constants, steps: int, division: str, tally: Tally
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, int]:
    """:func:`ei_integrate` and :func:`lif_multistep`: ``(I_int, D or None, spikes as float32,
    largest spike)``."""
    name = pop.name
    i_num, lo, hi = _fused_numerator(parts, pop, tally)
    d = None
    if "div" in parts and c.frac_div is not None:
        i_div, div_lo, div_hi = parts["div"]
        tally.observe(div_lo + c.eps, div_hi + c.eps, DIVISOR_BITS, False, f"{name}/D")
        if div_lo + c.eps < 1:
            raise _Clamped(f"{name}/D")  # a divisor of 0: the reference's corner
        # D as float32 where all its values are below 2**24 (exact), for fewer bytes to read
        d = np.add(i_div, c.eps, dtype=np.float32 if div_hi + c.eps < 1 << 24 else np.float64)
        shift = c.frac_num - MEMBRANE_FRAC - c.frac_div
        tally.observe(*_aligned_extremes(lo, hi, shift, DIVIDEND_BITS), DIVIDEND_BITS, True,
                      f"{name}/N")
    else:
        shift = c.frac_num - MEMBRANE_FRAC
    if COMPILED and _compiled.available():
        return _compiled_excitatory(i_num, lo, hi, d, shift, c, steps, division, tally, name)
    if d is not None:
        q = _fused_divide(i_num, d, shift, division)
        q_lo, q_hi = _extremes(q)
    else:
        q_lo, q_hi = _aligned_extremes(lo, hi, shift, ACCUMULATOR_BITS)
        q = _aligned(i_num, shift)
    tally.observe(q_lo, q_hi, ACCUMULATOR_BITS, True, f"{name}/q")
    if c.bias is not None:
        q = np.add(q, c.bias, out=q)
        q_lo, q_hi = _extremes(q)
    tally.observe(q_lo, q_hi, ACCUMULATOR_BITS, True, f"{name}/I_int")
    spikes, top = _fused_lif(q, q_lo, q_hi, steps, c, tally, name)
    return q, d, spikes, top


#: Run the excitatory step of the fused pass compiled (``sim._compiled``) where numba imports.
COMPILED = True


def _compiled_excitatory(i_num: np.ndarray, lo: float, hi: float, d: np.ndarray | None,
                         shift: int, c: Constants, steps: int, division: str, tally: Tally,
                         name: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, int]:
    """The rest of :func:`_fused_excitatory` (quotient, bias, LIF) in one compiled pass, with
    the tally's observations and the LIF's width check in the numpy pass's order."""
    q, spikes, (q_lo, q_hi, b_lo, b_hi, v_lo, v_hi) = _compiled.excitatory(
        i_num, d, shift, division, c.bias, c.log2_tau, c.theta, steps)
    if d is None:  # align is monotone: the numpy pass observes the aligned extremes
        q_lo, q_hi = _aligned_extremes(lo, hi, shift, ACCUMULATOR_BITS)
    tally.observe(q_lo, q_hi, ACCUMULATOR_BITS, True, f"{name}/q")
    if c.bias is not None:
        q_lo, q_hi = b_lo, b_hi
    tally.observe(q_lo, q_hi, ACCUMULATOR_BITS, True, f"{name}/I_int")
    if ((int(max(abs(q_lo), abs(q_hi))) + 1) << c.log2_tau >= 1 << (MEMBRANE_BITS - 1)
            or c.theta >= 1 << 31):
        raise _Clamped(f"{name}/v")  # as _fused_lif
    tally.observe(v_lo, v_hi, MEMBRANE_BITS, True, f"{name}/v")
    return q, d, spikes, int(v_hi >= c.theta)


def _fused_lif(current: np.ndarray, lo: float, hi: float, steps: int, c: Constants,
               tally: Tally, name: str) -> tuple[np.ndarray, int]:
    """:func:`lif_multistep` in int32. With ``|I| <= M`` and soft reset by ``theta >= 1``,
    ``|u| <= |h|`` and ``|decay(u)| <= (1 - 2**-j) |u| + 1``, so ``|h| < 2**j (M + 1)``: where
    that is below ``2**31`` no membrane is clamped and int32 holds every step."""
    j, theta = c.log2_tau, c.theta
    if (int(max(abs(lo), abs(hi))) + 1) << j >= 1 << (MEMBRANE_BITS - 1) or theta >= 1 << 31:
        raise _Clamped(f"{name}/v")
    seq = current.astype(np.int32).reshape(steps, -1, current.shape[1])
    h_seq = np.empty_like(seq)
    spikes = np.empty(seq.shape, dtype=bool)
    u = np.zeros(seq.shape[1:], dtype=np.int32)
    decay = np.empty_like(u)
    for t in range(steps):
        if j == 1:  # u - ceil(u / 2) = floor(u / 2)
            np.right_shift(u, 1, out=decay)
        else:
            np.negative(u, out=decay)
            np.right_shift(decay, j, out=decay)
            np.add(decay, u, out=decay)
        h = np.add(decay, seq[t], out=h_seq[t])
        s = np.greater_equal(h, theta, out=spikes[t])
        np.multiply(s, np.int32(theta), out=u)
        np.subtract(h, u, out=u)
    v_lo, v_hi = _extremes(h_seq)
    tally.observe(v_lo, v_hi, MEMBRANE_BITS, True, f"{name}/v")
    return spikes.reshape(current.shape).astype(np.float32), int(v_hi >= theta)


def _fused_readout(parts: dict[str, tuple[np.ndarray, float, float]], pop: Population,
                   c: Constants, steps: int, mode: str, tally: Tally
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`ei_readout` and :func:`if_readout` (or the summed current): ``(o, counts,
    membrane)``. The IF readout in closed form: with ``C[t]`` the running sum of ``o`` and no
    clamp, the count after step t is ``N[t] = floor(relu(max_{s <= t} C[s]) / theta)`` (a soft
    reset removes whole thresholds and a count never falls, so ``N[t] = max(N[t-1],
    floor(C[t] / theta))``), and the membrane before its reset ``C[t] - theta N[t-1]``."""
    name = pop.name
    i_num, lo, hi = _fused_numerator(parts, pop, tally)
    shift = c.frac_num - MEMBRANE_FRAC
    o_lo, o_hi = _aligned_extremes(lo, hi, shift, ACCUMULATOR_BITS)
    tally.observe(o_lo, o_hi, ACCUMULATOR_BITS, True, f"{name}/o")
    # float32 where every running sum and threshold multiple stays below 2**24 (exact)
    narrow = i_num.dtype == np.float32 and steps * max(-o_lo, o_hi) + c.theta < 1 << 24
    o = _aligned(i_num, shift, np.float32 if narrow else np.float64)
    running = o.reshape(steps, -1, o.shape[1]).copy()
    for t in range(1, steps):  # the running sum, below 2**31 T: exact
        np.add(running[t], running[t - 1], out=running[t])
    if mode != "spiking":
        total = running[-1]
        tally.observe(*_extremes(total), MEMBRANE_BITS + 8, True, f"{name}/sum")
        counts = total.astype(np.int64)
        return o, counts, np.zeros_like(counts)
    theta = c.theta
    reached = np.maximum(running, 0)
    for t in range(1, steps):
        np.maximum(reached[t], reached[t - 1], out=reached[t])
    n = _exact_floor_divide(reached, theta)
    v = running.copy()
    v[1:] -= theta * n[:-1]
    tally.observe(*_extremes(v), MEMBRANE_BITS, True, f"{name}/v")
    tally.observe(0, float(n[-1].max()), COUNT_BITS, False, f"{name}/counts")
    counts = n[-1].astype(np.int64)
    membrane = (running[-1] - theta * n[-1]).astype(np.int64)
    return o, counts, membrane


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
