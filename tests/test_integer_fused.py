"""The integer simulator's fused pass (``IntegerSimulator._run_slice_fused``) against its
reference functions: the same integers, saturation counts, peaks and states, on the shipped
digits model and on slices that would clamp (which the fused pass hands back)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_integer_sim import _tiny_graph  # tests/ is on sys.path (pytest prepend)

from eideploy.data.digits import load_digits
from eideploy.graph.ir import EIGraph
from eideploy.sim import IntegerSimulator, _compiled, divide, integer
from eideploy.sim.integer import ACCUMULATOR_BITS, DIVIDEND_BITS, _fused_divide, align

MODES = ["exact", "lut:8", "shift", "lut:5:newton"]


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def excitatory_step(request, monkeypatch) -> str:
    """Every test here runs with the fused pass's excitatory step compiled (``sim._compiled``,
    the default where numba imports) and as numpy operations."""
    if request.param == "compiled" and not _compiled.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(integer, "COMPILED", request.param == "compiled")
    return request.param


def _both(sim: IntegerSimulator, x: np.ndarray):
    sim.FUSED = False
    reference = sim.run(x, return_states=True)
    sim.FUSED = True
    return reference, sim.run(x, return_states=True)


def _assert_identical(reference, fused) -> None:
    assert np.array_equal(reference.counts, fused.counts)
    assert np.array_equal(reference.membrane, fused.membrane)
    # same quantities, in the same order, with the same counts and peaks
    assert list(reference.saturations.items()) == list(fused.saturations.items())
    assert list(reference.peaks.items()) == list(fused.peaks.items())
    assert reference.states.keys() == fused.states.keys()
    for pop, state in reference.states.items():
        assert state.keys() == fused.states[pop].keys(), pop
        for key, value in state.items():
            got = fused.states[pop][key]
            assert got.dtype == value.dtype and got.shape == value.shape, (pop, key)
            assert np.array_equal(got, value), (pop, key)


@pytest.mark.parametrize("division", MODES)
def test_fused_pass_gives_the_reference_integers_on_the_digits_model(quantized_digits,
                                                                      division):
    x = load_digits("test").inputs.numpy()[:150]
    sim = IntegerSimulator(quantized_digits, division)
    assert sim.fusable
    reference, fused = _both(sim, x)
    _assert_identical(reference, fused)
    assert sum(fused.saturations.values()) == 0
    assert fused.counts.sum() > 0 and fused.peaks["layers.1.exc/N"] > 1 << 24


def _divisive_graph(eps: float, div_weight: float) -> EIGraph:
    """input(4) -> inh(1) -> exc(2) (AMPA from input, SHUNT from inh) -> readout(2), the
    integer-simulator tests' tiny graph with weaker excitation."""
    return _tiny_graph(eps, div_weight, ee_weight=0.3, name="divisive")


@pytest.mark.parametrize("division", MODES)
def test_slices_that_would_clamp_run_by_the_reference_functions_among_fused_ones(division):
    # A divisor at its floor (1 LSB of a 2**-30 grid): any input spike overflows N and q. Silent
    # samples clamp nothing and run fused; one sample per slice mixes the two paths.
    graph = _divisive_graph(eps=1e-9, div_weight=1e-9)
    x = np.zeros((6, graph.T, 4))
    x[1], x[4, 2:] = 1.0, 1.0
    sim = IntegerSimulator(graph, division)
    sim.SLICE_ELEMENTS = 1
    reference, fused = _both(sim, x)
    _assert_identical(reference, fused)
    assert fused.saturations["exc/N"] > 0 and fused.saturations["exc/q"] > 0


@pytest.mark.parametrize("division", MODES)
def test_fused_pass_on_a_small_divisive_graph_without_clamps(division):
    graph = _divisive_graph(eps=0.05, div_weight=0.01)
    rng = np.random.default_rng(7)
    x = (rng.random((40, graph.T, 4)) < 0.6).astype(float)
    reference, fused = _both(IntegerSimulator(graph, division), x)
    _assert_identical(reference, fused)
    assert sum(fused.saturations.values()) == 0 and fused.counts.sum() > 0


# The division in floats against eideploy.sim.division's integers, over the dividends and
# divisors the widths allow (|N| < 2**45 after alignment, 1 <= D < 2**31).
numerators = st.integers(-(1 << (ACCUMULATOR_BITS - 1)) + 1, (1 << (ACCUMULATOR_BITS - 1)) - 1)
edges = st.sampled_from([1, 2, 3, 5, 181, 182, 46341, 46340, (1 << 24) - 1, 1 << 24,
                         (1 << 24) + 1, 1518500250, 1518500249, (1 << 31) - 1])
divisors = st.one_of(st.integers(1, (1 << 31) - 1), st.integers(1, 1 << 17), edges)


@settings(max_examples=150, deadline=None)
@given(i_num=st.lists(numerators, min_size=1, max_size=40),
       d=st.lists(divisors, min_size=40, max_size=40),
       shift=st.sampled_from([-23, -14, -5, 0, 1, 6]),
       division=st.sampled_from(MODES + ["lut:12", "lut:1"]))
def test_fused_division_equals_the_integer_division(i_num, d, shift, division):
    left = max(-shift, 0)  # |N| = |I_num| 2**left stays below 2**45
    n = np.clip(np.array(i_num, dtype=np.int64), -(1 << (DIVIDEND_BITS - 2 - left)),
                1 << (DIVIDEND_BITS - 2 - left))
    d = np.array(d[:len(n)], dtype=np.int64)
    expected = divide(align(n, shift, DIVIDEND_BITS), d, division)
    for dtype in (np.float32, np.float64):
        if dtype == np.float32 and d.max() >= 1 << 24:
            continue  # the fused pass holds D in float32 only below 2**24
        got = _fused_divide(n.astype(np.float64), d.astype(dtype), shift, division)
        assert np.array_equal(got.astype(np.int64), expected), dtype
        if _compiled.available():  # one time step of one sample per element, LIF aside
            q, _, extremes = _compiled.excitatory(n.astype(np.float64)[None], d.astype(dtype)[None],
                                                  shift, division, None, 1, 1 << 30, 1)
            assert np.array_equal(q[0].astype(np.int64), expected), dtype
            assert extremes[:2] == (expected.min(), expected.max())


GOLDEN = Path(__file__).resolve().parent / "golden" / "two-layer"


@pytest.mark.parametrize("readout", ["spiking", "current"])
@pytest.mark.parametrize("division", MODES)
def test_fused_pass_with_a_bias_a_slower_decay_and_either_readout(division, readout):
    # The golden two-layer network (per-neuron b_E, tau 4 and tau 2, three division paths) with
    # g_E at 1, which the fused pass needs, and its readout spiking or summing currents.
    graph = EIGraph.load(GOLDEN)
    graph.population("l1.exc").arrays.pop("gain_e")
    graph.readout["mode"] = readout
    with np.load(GOLDEN / "inputs.npz") as inputs:
        stored = inputs["x"]
    rng = np.random.default_rng(3)
    x = np.concatenate([stored, rng.random((30, *stored.shape[1:])) * stored.max()])
    sim = IntegerSimulator(graph, division)
    assert sim.fusable and sim.constants["l1.exc"].bias is not None
    assert sim.constants["l1.exc"].log2_tau == 2
    reference, fused = _both(sim, x)
    _assert_identical(reference, fused)
    assert sum(fused.saturations.values()) == 0 and np.abs(fused.counts).sum() > 0
