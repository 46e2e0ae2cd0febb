"""The integer simulator re-expressed as an ONNX graph of integer operators and run by
onnxruntime (eideploy.sim.onnx_export, docs/integer-semantics.md "ONNX cross-check"): both must
agree bit for bit on every state, in every division mode, saturating or not."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from eideploy.graph import EIGraph  # noqa: E402
from eideploy.graph.ir import Population, Projection  # noqa: E402
from eideploy.sim import IntegerSimulator, divide  # noqa: E402
from eideploy.sim.division import DIVISOR_BITS  # noqa: E402
from eideploy.sim.integer import (  # noqa: E402
    DIVIDEND_BITS,
    GAIN_FRAC,
    MEMBRANE_FRAC,
    round_shift,
    to_fixed,
)
from eideploy.sim.onnx_export import (  # noqa: E402
    INPUT_NAME,
    check_against_simulator,
    division_to_onnx,
    integer_to_onnx,
    run_onnx,
    save_onnx,
)

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"
DIVISIONS = ("exact", "lut:1", "lut:4", "lut:8", "lut:8:newton", "lut:14:newton", "shift")
SCENARIOS = ("typical", "negative-dividends", "saturating")
INTEGER_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL}


def _random_graph(seed: int, scenario: str) -> EIGraph:
    """input -> inh1 -> exc1 (AMPA, GABA, SHUNT) -> inh2 -> exc2 (AMPA, GABA; SHUNT for odd
    seeds) -> readout (AMPA, GABA), random sizes, sparse weights with parallel synapses,
    per-neuron gain and bias, tau in {2, 4, 8}, spiking or current readout.
    ``negative-dividends`` makes GABA outweigh AMPA; ``saturating`` drives r_I, the
    accumulators, N, q, the membranes and the readout counts past their widths."""
    rng = np.random.default_rng(seed)
    n_in, n_i1, n_e1, n_i2, n_e2, n_out = (int(v) for v in rng.integers(3, 12, 6))
    # long-alignment: saturating with F_num = 11 or 12, so the dividend is aligned by a left
    # shift of 34 or 35 bits
    long_alignment = scenario == "long-alignment"
    saturating = scenario == "saturating" or long_alignment
    negative = scenario == "negative-dividends"

    if saturating:
        n_in = 24  # with 3 parallel synapses per pair, I_IE exceeds 2**16 r_I levels

    def sparse(name, source, target, kind, n_tgt, n_src, scale, all_to_all=0, onto=None):
        if all_to_all:  # each pair all_to_all times, onto the first `onto` targets
            pairs = np.array([(t, s) for t in range(onto or n_tgt) for s in range(n_src)]
                             * all_to_all)
        else:
            nnz = int(rng.integers(1, 3 * n_tgt * n_src // 2 + 2))  # repeats: parallel synapses
            pairs = np.stack([rng.integers(0, n_tgt, nnz), rng.integers(0, n_src, nnz)], axis=1)
        nnz = len(pairs)
        return Projection(name, source, target, kind, "sparse",
                          rng.uniform(0.1, 1.0, nnz) * scale, pairs.astype(np.int64))

    def exc(name, n, tau):
        arrays = {"gain_e": rng.choice([1.0, 0.5, 1.75], n),
                  "bias": np.zeros(n) if negative else rng.normal(0, 0.2, n)}
        return Population(name, "exc", (n,), params={"tau": tau, "v_threshold": 1.0},
                          arrays=arrays)

    theta_i = 1e-7 if saturating else float(rng.choice([0.1, 0.25, 0.5]))
    inh = {"response": "floor", "theta_i": theta_i}
    pops = [Population("input", "input", (n_in,)),
            Population("inh1", "inh", (n_i1,), params=inh),
            exc("exc1", n_e1, float(rng.choice([2.0, 4.0, 8.0]))),
            Population("inh2", "inh", (n_i2,), params=inh),
            exc("exc2", n_e2, float(rng.choice([2.0, 4.0]))),
            Population("out", "readout", (n_out,))]
    gaba = 3.0 if negative else 0.3
    dense = 4 if saturating else 0
    # saturating: AMPA/GABA weights <= 0.25 keep F_num >= 14, so the dividend's alignment
    # (F_num - 16 - F_div with F_div = 30) stays a left shift of at most 32 bits (see
    # test_a_dividend_aligned_past_64_bits_saturates_instead_of_wrapping for longer ones)
    excitation = 1.0 if long_alignment else 0.2 if saturating else 0.5
    projs = [sparse("ie1", "input", "inh1", "exc", n_i1, n_in, 0.4, dense),
             sparse("ee1", "input", "exc1", "exc", n_e1, n_in, excitation),
             sparse("sub1", "inh1", "exc1", "sub", n_e1, n_i1, excitation if saturating
                    else gaba, 2 * dense, onto=n_e1 // 2),  # half saturate up, half down
             sparse("div1", "inh1", "exc1", "div", n_e1, n_i1, 1e-12 if saturating else 0.02),
             sparse("ie2", "exc1", "inh2", "exc", n_i2, n_e1, 0.4),
             sparse("ee2", "exc1", "exc2", "exc", n_e2, n_e1, 0.5, dense),
             sparse("sub2", "inh2", "exc2", "sub", n_e2, n_i2, 1e-5 if saturating else gaba),
             sparse("eo", "exc2", "out", "exc", n_out, n_e2, 1e5 if saturating else 0.5,
                    dense),
             sparse("so", "inh2", "out", "sub", n_out, n_i2, 0.1)]
    if seed % 2 and not saturating:  # SHUNT into both E populations (else exc2 has none)
        projs.append(sparse("div2", "inh2", "exc2", "div", n_e2, n_i2, 0.03))
    readout_mode = "current" if seed % 3 == 2 else "spiking"
    return EIGraph(f"random-{scenario}-{seed}", 8, pops, projs,
                   {"population": "input", "encoding": "spikes"},
                   {"population": "out", "mode": readout_mode, "classes": n_out,
                    "theta_out": 1.0},
                   {"stabilisation": "fixed-eps", "eps": 1e-9 if saturating else 0.05})


def _random_spikes(seed: int, graph: EIGraph, batch: int = 6) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    n_in = graph.population("input").size
    return (rng.random((batch, graph.T, n_in)) < 0.6).astype(np.float32)


def _assert_bit_identical(report: dict) -> None:
    differing = {k: v for k, v in report["outputs"].items() if v["mismatches"]}
    assert report["bit_identical"], (differing, report["uncompared"])
    assert report["mismatches"] == 0 and report["uncompared"] == []


# ---------------------------------------------------------------- tiny random graphs
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("seed", range(4))
def test_onnxruntime_reproduces_every_state_of_random_graphs_in_every_division_mode(
        seed, scenario):
    graph = _random_graph(seed, scenario)
    x = _random_spikes(seed, graph)
    for division in DIVISIONS:
        report = check_against_simulator(graph, x, division, batch_size=4)
        _assert_bit_identical(report)
        # every population's state, the readout counts and membrane; the batch split in two
        assert {"counts", "membrane", "exc1/divisor", "exc1/current", "exc1/output",
                "inh1/output", "exc2/output", "out/current"} <= set(report["outputs"])
        assert report["outputs"]["exc1/output"]["elements"] == graph.T * len(x) * \
            graph.population("exc1").size


@pytest.mark.parametrize("seed", range(4))
def test_the_fixtures_do_saturate_and_do_divide_negative_dividends(seed):
    # the cases above only prove something if they reach the clamps and the sign handling
    saturating = _random_graph(seed, "saturating")
    result = IntegerSimulator(saturating, "lut:8").run(_random_spikes(seed, saturating))
    clamped = {k.split("/")[1] for k, v in result.saturations.items() if v}
    assert {"r_I", "I_sub", "N", "q", "v", "o"} <= clamped, result.saturations
    if saturating.readout["mode"] == "spiking":
        assert "counts" in clamped
    negative = _random_graph(seed, "negative-dividends")
    states = IntegerSimulator(negative, "exact").run(_random_spikes(seed, negative),
                                                     return_states=True).states
    # bias 0 and g_E > 0: I_int < 0 exactly where the dividend N is negative
    assert (states["exc1"]["current"] < 0).mean() > 0.2


def _spec_exc1_current(sim: IntegerSimulator, spikes: np.ndarray, r_i: np.ndarray
                       ) -> np.ndarray:
    """exc1's I_int from docs/integer-semantics.md §3.3 with Python integers for the aligned
    dividend, for a divisor of 1: sat32(g_E sat32(sat46(I_num * 2**s)) + b_E)."""
    def sat(v, bits):
        return np.clip(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)

    steps, batch = spikes.shape[:2]
    parts = {"input": spikes.reshape(steps * batch, -1), "inh1": r_i.reshape(steps * batch, -1)}
    i_num = 0
    for syn in sim.synapses["exc1"]:
        if syn.kind != "div":
            part = sat(np.asarray((syn.matrix @ parts[syn.source].T).T), 32)
            i_num = i_num - part if syn.kind == "sub" else i_num + part
    up = 16 + sim.frac[("exc1", "div")] - sim.frac[("exc1", "num")]
    exact = sat(i_num, 32).astype(object) * (1 << up)  # Python integers: no wrap
    dividend = np.array([min(max(int(v), -(1 << 45)), (1 << 45) - 1) for v in exact.ravel()])
    q = sat(dividend.reshape(i_num.shape), 32)
    pop = sim.graph.population("exc1")
    q = round_shift(q * to_fixed(pop.per_neuron("gain_e", 1.0), GAIN_FRAC), GAIN_FRAC)
    bias = to_fixed(pop.per_neuron("bias", 0.0), MEMBRANE_FRAC)
    return sat(q + bias, 32).reshape(steps, batch, -1)


def test_a_dividend_aligned_past_64_bits_saturates_instead_of_wrapping():
    # the spec: N = sat46(I_num * 2**(16 + F_div - F_num)) of the exact product; here a left
    # shift of 34-35 bits of a saturated 32-bit I_num, a product up to 2**66
    graph = _random_graph(1, "long-alignment")
    sim = IntegerSimulator(graph, "exact")
    assert 16 + sim.frac[("exc1", "div")] - sim.frac[("exc1", "num")] > 32
    x = _random_spikes(1, graph)
    spikes = sim.host.spikes(x).astype(np.int64)
    got = run_onnx(integer_to_onnx(sim), spikes)
    assert np.all(got["exc1/divisor"] == 1)
    expected = _spec_exc1_current(sim, spikes, got["inh1/output"])
    assert np.array_equal(got["exc1/current"], expected)
    assert np.abs(expected).min() >= 1 << 29  # every element saturated (|g_E| >= 1/2)


def test_the_simulator_saturates_a_dividend_aligned_past_64_bits_too():
    graph = _random_graph(1, "long-alignment")
    _assert_bit_identical(check_against_simulator(graph, _random_spikes(1, graph), "exact"))


def test_the_check_reports_mismatches_when_the_arithmetic_differs():
    graph = _random_graph(0, "typical")
    x = _random_spikes(0, graph)
    sim_shift = IntegerSimulator(graph, "shift")
    got = run_onnx(integer_to_onnx(IntegerSimulator(graph, "exact")),
                   sim_shift.host.spikes(x))
    expected = sim_shift.run(x, return_states=True).states["exc1"]["current"]
    assert np.count_nonzero(got["exc1/current"] != expected) > expected.size // 4


def test_the_input_spikes_broadcast_over_time_and_the_batch_is_dynamic():
    graph = _random_graph(1, "typical")
    sim = IntegerSimulator(graph, "lut:8")
    model = integer_to_onnx(sim)
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[1]
    assert model.graph.input[0].name == INPUT_NAME and batch_dim.dim_param == "batch"
    x = np.ones((3, graph.population("input").size))  # (B, n_in): one frame for all T steps
    got = run_onnx(model, sim.host.spikes(x))
    result = sim.run(x, return_states=True)
    assert np.array_equal(got["counts"], result.counts)
    assert np.array_equal(got["exc2/output"], result.states["exc2"]["output"])


# ---------------------------------------------------------------- the division step alone
_DIVISION_SESSIONS: dict[str, object] = {}


def _onnx_divide(n: np.ndarray, d: np.ndarray, division: str) -> np.ndarray:
    if division not in _DIVISION_SESSIONS:
        import onnxruntime

        _DIVISION_SESSIONS[division] = onnxruntime.InferenceSession(
            division_to_onnx(division).SerializeToString(), providers=["CPUExecutionProvider"])
    session = _DIVISION_SESSIONS[division]
    return session.run(["quotient"], {"dividend": n, "divisor": d})[0]


@settings(max_examples=60, deadline=None)
@given(n=st.lists(st.integers(-(1 << (DIVIDEND_BITS - 1)) + 1, (1 << (DIVIDEND_BITS - 1)) - 1),
                  min_size=1, max_size=64),
       log_d=st.lists(st.integers(0, DIVISOR_BITS - 1), min_size=64, max_size=64),
       mantissa=st.lists(st.integers(0, (1 << 30) - 1), min_size=64, max_size=64))
def test_the_onnx_division_equals_divide_over_the_whole_operand_range(n, log_d, mantissa):
    # divisors log-uniform over [1, 2**31): every leading-one position, below and above the
    # table's n bits
    n = np.array(n, dtype=np.int64)
    d = np.array([(1 << k) | (m & ((1 << k) - 1)) for k, m in zip(log_d, mantissa,
                                                                    strict=True)][:len(n)],
                 dtype=np.int64)
    for division in DIVISIONS:
        assert np.array_equal(_onnx_divide(n, d, division), divide(n, d, division)), division


def test_the_onnx_division_equals_divide_at_the_range_edges():
    edges = [1, 2, 3, 5, 255, 256, 257, (1 << 16) - 1, 1 << 16, (1 << 30) + 1,
             (1 << DIVISOR_BITS) - 1]
    d = np.array(edges * 5, dtype=np.int64)
    top = (1 << (DIVIDEND_BITS - 1)) - 1
    n = np.repeat(np.array([0, 1, -1, top, -top], dtype=np.int64), len(edges))
    for division in DIVISIONS:
        assert np.array_equal(_onnx_divide(n, d, division), divide(n, d, division)), division


# ---------------------------------------------------------------- integer operators only
def _tensor_types(model) -> dict[str, int]:
    """Every typed tensor of the model, shapes inferred: inputs, outputs, intermediates and
    initializers, and the target type of every Cast."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to":
                types[f"{node.name}.to"] = attr.i
            elif attr.type == onnx.AttributeProto.TENSOR:
                types[f"{node.name}.{attr.name}"] = attr.t.data_type
    return types


def _non_integer_tensors(model) -> dict[str, str]:
    types = _tensor_types(model)
    produced = {o for node in model.graph.node for o in node.output}
    assert produced <= set(types)  # every intermediate was typed by inference
    return {k: onnx.TensorProto.DataType.Name(v) for k, v in types.items()
            if v not in INTEGER_TYPES}


@pytest.mark.parametrize("division", DIVISIONS)
def test_no_node_touches_a_float_tensor(division):
    model = integer_to_onnx(IntegerSimulator(_random_graph(2, "typical"), division))
    assert _non_integer_tensors(model) == {}
    ops = {node.op_type for node in model.graph.node}
    assert ops <= {"MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Clip", "Max", "Less",
                   "Greater", "GreaterOrEqual", "Where", "Cast", "BitShift", "Gather",
                   "Unsqueeze", "Concat", "ReduceSum", "Identity"}
    if division.startswith("lut"):
        assert "Gather" in ops and any(i.name.startswith("reciprocal_lut")
                                       for i in model.graph.initializer)


def test_save_onnx_writes_a_model_that_onnxruntime_runs(tmp_path):
    graph = _random_graph(3, "typical")
    sim = IntegerSimulator(graph, "lut:8:newton")
    path = save_onnx(sim, tmp_path / "sub" / "integer.onnx")
    assert [p.name for p in path.parent.iterdir()] == ["integer.onnx"]  # no temporary left
    assert onnx.load(path).metadata_props[0].value == "lut:8:newton"
    x = _random_spikes(3, graph)
    got = run_onnx(path, sim.host.spikes(x))
    assert np.array_equal(got["membrane"], sim.run(x).membrane)


# ---------------------------------------------------------------- the optional extra
def test_the_package_imports_without_the_extra_and_names_it_when_used(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # a None entry makes `import onnx` fail
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.delitem(sys.modules, "eideploy.sim.onnx_export")
    module = importlib.import_module("eideploy.sim.onnx_export")
    sim = IntegerSimulator(_random_graph(0, "typical"))
    with pytest.raises(ImportError, match=r"pip install 'eideploy\[onnx\]'"):
        module.integer_to_onnx(sim)
    with pytest.raises(ImportError, match=r"pip install 'eideploy\[onnx\]'"):
        module.run_onnx(b"", np.zeros((8, 1, 3), dtype=np.int64))


# ---------------------------------------------------------------- the shipped digits model
@pytest.mark.parametrize("division", ["exact", "lut:8", "shift"])
def test_onnxruntime_reproduces_the_simulator_on_the_whole_digits_test_split(
        quantized_digits, division):
    from eideploy.data import load_dataset, to_float

    dataset = load_dataset("digits", "test", None, T=quantized_digits.T)
    x = to_float(dataset.inputs).numpy()
    report = check_against_simulator(quantized_digits, x, division)
    print(f"\n{division}: {report['mismatches']} of {report['elements']} elements differ "
          f"({report['samples']} samples, {len(report['outputs'])} outputs)")
    _assert_bit_identical(report)
    assert report["samples"] == 360
    # every readout neuron's counts: 10 classes of 8 (the export's population readout)
    assert report["outputs"]["counts"]["elements"] == 360 * 10 * 8
    assert "layers.1.exc/divisor" in report["outputs"]
    assert _non_integer_tensors(integer_to_onnx(IntegerSimulator(quantized_digits,
                                                                 division))) == {}
