"""The integer simulator (docs/integer-semantics.md): division bounds, widths, an independent
integer reference, and accuracy on the shipped digits model against the float executor."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eideploy.data.digits import load_digits
from eideploy.graph import EIGraph
from eideploy.graph.execute import accuracy as float_accuracy
from eideploy.sim import IntegerSimulator, accuracy, divide, lut_bound, lut_reciprocal
from eideploy.sim.division import DIVISOR_BITS, SHIFT_BOUNDS, bit_length
from eideploy.sim.integer import (
    ACCUMULATOR_BITS,
    COUNT_BITS,
    DIVIDEND_BITS,
    MEMBRANE_BITS,
    MEMBRANE_FRAC,
    WEIGHT_BITS,
    lif_decay,
    saturate,
    to_fixed,
)
from eideploy.targets.dynapse2.config import exported_graph

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"
divisors = st.integers(1, (1 << DIVISOR_BITS) - 1)
dividends = st.integers(-(1 << (DIVIDEND_BITS - 1)) + 1, (1 << (DIVIDEND_BITS - 1)) - 1)


def round_half_away(value: Fraction) -> int:
    magnitude = int(abs(value) + Fraction(1, 2))  # floor for non-negative values
    return -magnitude if value < 0 else magnitude


# ---------------------------------------------------------------- division
@settings(max_examples=200, deadline=None)
@given(d=st.lists(divisors, min_size=1, max_size=64), bits=st.integers(2, 12),
       newton=st.booleans())
def test_lut_reciprocal_error_stays_within_the_documented_bound(d, bits, newton):
    d = np.array(d, dtype=np.int64)
    recip, shift = lut_reciprocal(d, bits, newton)
    error = [abs(Fraction(int(r) * int(v), 1 << int(s)) - 1)
             for r, v, s in zip(recip, d, shift, strict=True)]
    assert max(error) <= lut_bound(bits, newton)


@pytest.mark.parametrize("bits", [4, 6, 8, 10])
def test_lut_bound_holds_for_every_divisor_up_to_2_pow_20_and_matches_the_spec_table(bits):
    d = np.arange(1, 1 << 20, dtype=np.int64)
    recip, shift = lut_reciprocal(d, bits)
    worst = np.abs(recip * d / np.exp2(shift) - 1).max()
    assert worst <= lut_bound(bits)
    # spec/dynapse2.md §5: n=4 3.0e-2, n=6 7.8e-3, n=8 1.95e-3, n=10 4.9e-4
    assert worst == pytest.approx({4: 3.0e-2, 6: 7.8e-3, 8: 1.95e-3, 10: 4.9e-4}[bits], rel=0.02)


@settings(max_examples=300, deadline=None)
@given(n=dividends, d=divisors)
def test_exact_division_is_integer_division_rounded_half_away_from_zero(n, d):
    assert int(divide(np.int64(n), np.int64(d), "exact")) == round_half_away(Fraction(n, d))


@settings(max_examples=300, deadline=None)
@given(n=dividends, d=divisors, method=st.sampled_from(["lut:8", "lut:4", "lut:8:newton"]))
def test_lut_quotient_error_is_the_reciprocal_bound_plus_half_an_lsb(n, d, method):
    bits, newton = int(method.split(":")[1]), method.endswith("newton")
    q = int(divide(np.int64(n), np.int64(d), method))
    true = Fraction(n, d)
    assert abs(q - true) <= abs(true) * Fraction(lut_bound(bits, newton)) + Fraction(1, 2)


@settings(max_examples=300, deadline=None)
@given(n=dividends, d=divisors)
def test_shift_divides_by_the_nearest_power_of_two_in_log2(n, d):
    q = int(divide(np.int64(n), np.int64(d), "shift"))
    k = int(bit_length(np.int64(d))) - 1
    k += d * d >= 2 ** (2 * k + 1)
    assert q == round_half_away(Fraction(n, 2 ** k))
    low, high = SHIFT_BOUNDS
    assert low - 1e-12 <= Fraction(d, 2 ** k) ** -1 - 1 <= high + 1e-12


def test_divide_refuses_a_divisor_below_one():
    with pytest.raises(ValueError, match="divisor"):
        divide(np.array([5]), np.array([0]))


# ---------------------------------------------------------------- widths
@settings(max_examples=200, deadline=None)
@given(x=st.lists(st.integers(-(1 << 62), 1 << 62), min_size=1, max_size=32),
       bits=st.integers(2, 48), signed=st.booleans())
def test_saturate_keeps_every_value_within_its_width_and_counts_the_clamps(x, bits, signed):
    counts: dict[str, int] = {}
    peaks: dict[str, int] = {}
    arr = np.array(x, dtype=np.int64)
    out = saturate(arr, bits, signed, "q", counts, peaks)
    high = (1 << (bits - 1 if signed else bits)) - 1
    low = -high - 1 if signed else 0
    assert out.min() >= low and out.max() <= high
    assert counts["q"] == sum(1 for v in x if v < low or v > high)
    assert np.array_equal(out[(arr >= low) & (arr <= high)], arr[(arr >= low) & (arr <= high)])


@settings(max_examples=200, deadline=None)
@given(u=st.integers(-(1 << 31), (1 << 31) - 1))
def test_lif_decay_for_tau_2_is_an_arithmetic_right_shift_by_one(u):
    assert int(lif_decay(np.int64(u), 1)) == u >> 1


# ---------------------------------------------------------------- the digits model
@pytest.fixture(scope="module")
def digits_test():
    ds = load_digits("test")
    return ds.inputs.numpy(), ds.labels.numpy()


def test_weights_are_weight_bits_levels_that_reconstruct_the_quantized_graph(quantized_digits):
    sim = IntegerSimulator(quantized_digits)
    for _pop, synapses in sim.synapses.items():
        for syn in synapses:
            proj = next(p for p in quantized_digits.projections if p.name == syn.projection)
            assert syn.levels.min() >= 0 and syn.levels.max() < (1 << WEIGHT_BITS)
            # rounding to the dendrite's grid costs at most half a level
            assert np.abs(syn.levels * 2.0 ** -syn.frac - proj.weight).max() <= 2.0 ** -(
                syn.frac + 1) + 1e-15


@pytest.mark.parametrize("division", ["exact", "lut:8", "shift"])
def test_no_value_exceeds_its_documented_width_on_the_digits_test_split(
        quantized_digits, digits_test, division):
    x, _ = digits_test
    result = IntegerSimulator(quantized_digits, division).run(x)
    assert sum(result.saturations.values()) == 0
    limits = {"I_exc": ACCUMULATOR_BITS - 1, "I_sub": ACCUMULATOR_BITS - 1,
              "I_div": ACCUMULATOR_BITS - 1, "I_num": ACCUMULATOR_BITS - 1,
              "q": ACCUMULATOR_BITS - 1, "I_int": ACCUMULATOR_BITS - 1,
              "o": ACCUMULATOR_BITS - 1, "v": MEMBRANE_BITS - 1, "r_I": COUNT_BITS,
              "counts": COUNT_BITS, "D": DIVISOR_BITS, "N": DIVIDEND_BITS - 1}
    for name, peak in result.peaks.items():
        assert peak < 1 << limits[name.rsplit("/", 1)[1]], name


def _reference_counts(sim: IntegerSimulator, spikes: np.ndarray) -> np.ndarray:
    """docs/integer-semantics.md written out with Python integers, one sample at a time: the
    simulator's weights, then plain loops, Fraction division and the documented formats."""
    graph = sim.graph
    steps = graph.T
    readout = graph.readout["population"]
    all_counts = []
    for b in range(spikes.shape[1]):
        out = {sim.host.input.name: [[int(v) for v in spikes[t, b].reshape(-1)]
                                     for t in range(steps)]}
        for pop in graph.populations:
            if pop.role == "input":
                continue
            sums = {k: [[0] * pop.size for _ in range(steps)] for k in ("exc", "sub", "div")}
            for syn in sim.synapses[pop.name]:
                pairs = zip(syn.indices.tolist(), syn.levels.tolist(), strict=True)
                for (tgt, src), level in pairs:
                    for t in range(steps):
                        sums[syn.kind][t][tgt] += int(level) * out[syn.source][t][src]
            num_frac = sim.frac[(pop.name, "num")]
            if pop.role == "inh":
                theta = round_half_away(Fraction(pop.params["theta_i"]) * 2 ** num_frac)
                out[pop.name] = [[max(v, 0) // theta for v in row] for row in sums["exc"]]
                continue
            num = [[e - s for e, s in zip(re, rs, strict=True)]
                   for re, rs in zip(sums["exc"], sums["sub"], strict=True)]
            if pop.role == "readout":
                theta = 1 << MEMBRANE_FRAC
                v, counts = [0] * pop.size, [0] * pop.size
                for t in range(steps):
                    for i in range(pop.size):
                        v[i] += round_half_away(Fraction(num[t][i] * 2 ** MEMBRANE_FRAC,
                                                         2 ** num_frac))
                        n = max(v[i], 0) // theta
                        counts[i] += n
                        v[i] -= n * theta
                all_counts.append(counts)
                continue
            div_frac = sim.frac[(pop.name, "div")]
            eps = round_half_away(Fraction(sim.eps) * 2 ** div_frac)
            theta = round_half_away(Fraction(pop.params["v_threshold"]) * 2 ** MEMBRANE_FRAC)
            u, spikes_out = [0] * pop.size, []
            for t in range(steps):
                row = []
                for i in range(pop.size):
                    dividend = round_half_away(Fraction(num[t][i] * 2 ** (MEMBRANE_FRAC
                                                                          + div_frac),
                                                        2 ** num_frac))
                    current = round_half_away(Fraction(dividend, sums["div"][t][i] + eps))
                    h = u[i] // 2 + current  # tau = 2: floor(u / 2)
                    s = int(h >= theta)
                    u[i] = h - s * theta
                    row.append(s)
                spikes_out.append(row)
            out[pop.name] = spikes_out
        assert readout == graph.populations[-1].name
    return np.array(all_counts)


def test_exact_mode_equals_a_straightforward_integer_reference(quantized_digits, digits_test):
    x, _ = digits_test
    sim = IntegerSimulator(quantized_digits, "exact")
    batch = x[:3]
    spikes = sim.host.spikes(batch)
    expected = _reference_counts(sim, np.broadcast_to(spikes, (quantized_digits.T,
                                                               *spikes.shape[1:])))
    assert np.array_equal(sim.run(batch).counts, expected)


def test_integer_accuracy_is_within_one_point_of_the_float_executor(quantized_digits,
                                                                     digits_test):
    x, y = digits_test
    reference = float_accuracy(quantized_digits, x, y)
    measured = {m: accuracy(quantized_digits, x, y, m) for m in ("exact", "lut:8", "shift")}
    print(f"\nfloat {reference:.2f}%  " + "  ".join(
        f"{m} {a:.2f}% (saturations {sum(s.values())})" for m, (a, s) in measured.items()))
    assert reference > 90.0
    for mode in ("exact", "lut:8"):
        assert abs(measured[mode][0] - reference) <= 1.0, mode
    # shift is only reported (its drop is the price of a divider-free, table-free chip)
    assert measured["shift"][0] > 0


def test_to_fixed_rounds_half_away_from_zero():
    assert to_fixed([0.5, 1.5, -0.5, -2.5, 0.49], 0).tolist() == [1, 2, -1, -3, 0]


def _tiny_graph(eps: float, div_weight: float, ee_weight: float = 1.0,
                name: str = "tiny") -> EIGraph:
    """input(4) -> inh(1) -> exc(2) (AMPA from input, SHUNT from inh) -> readout(2)."""
    from eideploy.graph.ir import Population, Projection

    def sparse(name, source, target, kind, pairs, weight):
        return Projection(name, source, target, kind, "sparse",
                          np.full(len(pairs), weight), np.array(pairs, dtype=np.int64))

    pops = [Population("input", "input", (4,)),
            Population("inh", "inh", (1,), params={"response": "floor", "theta_i": 0.25}),
            Population("exc", "exc", (2,), params={"tau": 2.0, "v_threshold": 1.0}),
            Population("out", "readout", (2,))]
    everything = [(0, i) for i in range(4)] + [(1, i) for i in range(4)]
    projs = [sparse("ie", "input", "inh", "exc", [(0, i) for i in range(4)], 1.0),
             sparse("ee", "input", "exc", "exc", everything, ee_weight),
             sparse("div", "inh", "exc", "div", [(0, 0), (1, 0)], div_weight),
             sparse("out", "exc", "out", "exc", [(0, 0), (1, 1)], 1.0)]
    return EIGraph(name, 4, pops, projs, {"population": "input", "encoding": "spikes"},
                   {"population": "out", "mode": "spiking", "classes": 2, "theta_out": 1.0},
                   {"stabilisation": "fixed-eps", "eps": eps})


def test_a_divisor_at_its_floor_saturates_the_dividend_and_quotient_and_counts_it():
    # SHUNT weights of 1e-9 put the divisor grid at 2**-30 and eps on 1 LSB: N / D overflows
    graph = _tiny_graph(eps=1e-9, div_weight=1e-9)
    x = np.ones((3, graph.T, 4))
    result = IntegerSimulator(graph, "exact").run(x)
    assert result.saturations["exc/N"] == 3 * graph.T * 2
    assert result.saturations["exc/q"] == 3 * graph.T * 2
    assert result.peaks["exc/N"] == (1 << (DIVIDEND_BITS - 1)) - 1
    assert result.peaks["exc/q"] == (1 << (ACCUMULATOR_BITS - 1)) - 1
    assert result.counts.max() < 1 << COUNT_BITS


def test_shift_mode_changes_the_current_when_the_divisor_is_far_from_a_power_of_two():
    # D = eps + I_div = 0.75 in divisor units: shift divides by 1 (2**0), exact by 0.75
    graph = _tiny_graph(eps=0.75, div_weight=1e-12)
    x = np.ones((1, graph.T, 4))
    exact = IntegerSimulator(graph, "exact").run(x, return_states=True)
    shift = IntegerSimulator(graph, "shift").run(x, return_states=True)
    ratio = exact.states["exc"]["current"] / shift.states["exc"]["current"]
    assert np.allclose(ratio, 4 / 3, rtol=1e-3)


GOLDEN_SPIKES_IN = [[0, 0, 0, 1], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0]]
GOLDEN_I_INT = {  # exc population's I_int (Q.16), steps x neurons
    "exact": [[36447, 218507], [252089, 75639], [134934, 231323], [201684, 126045]],
    "lut:8": [[36458, 218570], [251816, 75557], [134785, 231067], [201465, 125908]],
    "shift": [[26240, 157312], [262144, 78656], [183488, 314560], [209728, 131072]],
}


@pytest.mark.parametrize("division", sorted(GOLDEN_I_INT))
def test_golden_trace_of_the_tiny_network_is_reproduced_bit_for_bit(division):
    # Step 0 by hand (docs/integer-semantics.md): F_num = 13, F_div = 18; w_ee = 0.05 -> 410,
    # r_I = floor(8192 / 2048) = 4, D = 4 * 2621 + 13107 = 23591,
    # I_int = rnd(410 * 2**21 / 23591) = 36447 (float: 0.05 / 0.09 * 2**16 = 36409).
    graph = _tiny_graph(eps=0.05, div_weight=0.01)
    next(p for p in graph.projections if p.name == "ee").weight[:] = [
        0.3, 0.1, 0.2, 0.05, 0.05, 0.2, 0.1, 0.3]
    x = np.array([GOLDEN_SPIKES_IN], dtype=float)
    result = IntegerSimulator(graph, division).run(x, return_states=True)
    assert result.states["exc"]["current"][:, 0].tolist() == GOLDEN_I_INT[division]
    assert result.states["inh"]["output"][:, 0, 0].tolist() == [4, 8, 12, 8]
    assert result.states["exc"]["output"][:, 0].tolist() == [[0, 1], [1, 1], [1, 1], [1, 1]]


@settings(max_examples=300, deadline=None)
@given(x=st.integers(-(1 << 40), 1 << 40), left=st.integers(0, 80),
       bits=st.sampled_from([ACCUMULATOR_BITS, DIVIDEND_BITS]))
def test_a_left_alignment_saturates_at_the_width_and_never_wraps(x, left, bits):
    from eideploy.sim.integer import align

    counts: dict[str, int] = {}
    got = int(saturate(align(np.array([x], dtype=np.int64), -left, bits), bits, True, "v",
                       counts, {})[0])
    high = (1 << (bits - 1)) - 1
    assert got == max(-high - 1, min(high, x << left))
    assert counts["v"] == int(not -high - 1 <= x << left <= high)


def test_the_chip_configuration_simulates_exactly_as_the_quantized_graph(quantized_digits,
                                                                         digits_test):
    x, _ = digits_test
    from_config = IntegerSimulator(exported_graph(quantized_digits.meta["export_dir"]), "lut:8")
    from_graph = IntegerSimulator(quantized_digits, "lut:8")
    a, b = from_config.run(x[:64], return_states=True), from_graph.run(x[:64], return_states=True)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.membrane, b.membrane)
    for pop, state in b.states.items():
        for key, value in state.items():
            np.testing.assert_array_equal(a.states[pop][key], value, err_msg=f"{pop} {key}")


CIRCUIT = ("lif_multistep", "inhibitory_response", "stabilise", "ei_integrate", "ei_readout",
           "if_readout")


def test_integer_circuit_and_onnx_builders_mirror_the_float_executor_name_for_name_in_order():
    import inspect

    from eideploy.graph import execute
    from eideploy.sim import integer, onnx_export

    def in_source_order(module, prefix=""):
        return sorted(CIRCUIT, key=lambda name: inspect.getsourcelines(
            getattr(module, prefix + name))[1])

    assert in_source_order(execute) == list(CIRCUIT)
    assert in_source_order(integer) == list(CIRCUIT)
    assert in_source_order(onnx_export, "_") == list(CIRCUIT)


@pytest.mark.parametrize("division", ["exact", "lut:8", "shift"])
def test_a_batch_run_in_slices_is_bit_identical_to_one_whole_batch_pass(
        quantized_digits, digits_test, division):
    """``run`` cuts the batch into cache-sized slices; every integer, saturation count, peak
    and state is that of a single pass over the whole batch (and of slices of one sample)."""
    x, _ = digits_test
    x = x[:101]  # not a multiple of any slice size below
    sim = IntegerSimulator(quantized_digits, division)
    results = {}
    for elements in (1 << 40, IntegerSimulator.SLICE_ELEMENTS, 1):
        sim.SLICE_ELEMENTS = elements
        results[elements] = sim.run(x, return_states=True)
    assert sim.chunk() == 1
    whole = results.pop(1 << 40)
    assert whole.counts.sum() > 0
    for sliced in results.values():
        assert np.array_equal(sliced.counts, whole.counts)
        assert np.array_equal(sliced.membrane, whole.membrane)
        assert sliced.saturations == whole.saturations and sliced.peaks == whole.peaks
        assert sliced.states.keys() == whole.states.keys()
        for name, state in whole.states.items():
            for key, value in state.items():
                assert np.array_equal(sliced.states[name][key], value), (name, key)
