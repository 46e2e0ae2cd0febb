"""A population readout (``eideploy.graph.readout``): several readout neurons per class.

The digital chain decides as with one neuron per class, state for state; on the analog chip the
copies' mismatch is independent and averages out; the board's decoder sums a class's tags."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from eideploy.graph.execute import FloatExecutor
from eideploy.graph.host import class_totals, readout_decision
from eideploy.graph.ir import EIGraph, GraphError
from eideploy.graph.readout import readout_copies, replicate_readout
from eideploy.sim.integer import IntegerSimulator
from eideploy.targets.dynapse2.analog import AnalogSimulator
from eideploy.targets.dynapse2.board.events import InputEvents, decode_counts, readout_classes
from eideploy.targets.dynapse2.compile import compile_graph
from eideploy.targets.dynapse2.config import read_config


@pytest.fixture(scope="module")
def float_graph(quantized_digits) -> EIGraph:
    """The shipped digits model's float graph as exported (with the export's copies)."""
    return EIGraph.load(quantized_digits.meta["export_dir"])


def test_class_totals_and_decision_sum_a_class_s_neurons():
    counts = np.array([[3, 0, 1, 1], [2, 2, 0, 5]])
    assert class_totals(counts, 2).tolist() == [[3, 2], [4, 5]]
    # neuron 0 alone has the most spikes, but class 1's two neurons have more together
    assert readout_decision(np.array([[3, 0, 2, 2]]), np.zeros((1, 4)), 2).tolist() == [1]
    # equal totals: the higher summed membrane (or, on the board, the earliest first spike)
    membrane = np.array([[0.1, 0.1, 0.5, -0.4]])
    assert readout_decision(np.array([[1, 1, 1, 1]]), membrane, 2).tolist() == [0]
    assert readout_decision(np.array([[1, 1, 1, 1]]), membrane, 2, np.max).tolist() == [1]
    with pytest.raises(ValueError, match="cannot be split into 3 classes"):
        class_totals(counts, 3)


def test_the_export_gives_eight_readout_neurons_per_class(float_graph, quantized_digits):
    readout = float_graph.population(float_graph.readout_settings.population)
    assert readout.size == 80 and float_graph.readout_settings.classes == 10
    assert readout_copies(float_graph) == readout_copies(quantized_digits) == 8
    rows = next(p for p in float_graph.projections_into(readout.name) if p.kind == "exc")
    assert rows.weight.shape[0] == 80
    assert np.array_equal(rows.weight[0:8], np.repeat(rows.weight[0:1], 8, axis=0))


def test_replicating_a_replicated_graph_is_refused(float_graph):
    with pytest.raises(GraphError, match="already has 8 neurons per class"):
        replicate_readout(float_graph, 2)
    with pytest.raises(GraphError, match="integer in 1..64"):
        replicate_readout(float_graph, 0)


def test_the_digital_chain_decides_as_with_one_neuron_per_class(quantized_digits, digits_batch):
    x = digits_batch.numpy()[:64].reshape(-1, 1, 8, 8)
    integer = IntegerSimulator(quantized_digits).run(x, return_states=True)
    readout = quantized_digits.readout_settings.population
    counts = integer.states[readout]["counts"]
    # the copies of a class carry the same quantized weights: the same spikes, copy for copy
    blocks = counts.reshape(len(x), 10, 8)
    assert (blocks == blocks[..., :1]).all()
    assert np.array_equal(integer.predictions(), readout_decision(blocks[..., 0],
                                                                 integer.membrane[:, ::8]))
    assert np.array_equal(integer.predictions(), FloatExecutor(quantized_digits).predict(x))


def test_copies_average_the_chip_s_readout_mismatch(float_graph, dynapse2, digits_batch):
    """The class totals' error under 10% mismatch shrinks with 8 copies (each copy its own
    draw) against one neuron per class (the same chip model, the same inputs)."""
    single = EIGraph(**{**float_graph.__dict__})
    readout = single.population(single.readout_settings.population)
    keep = np.arange(0, readout.size, 8)
    single.populations = [p if p is not readout else
                          type(p)(p.name, p.role, (10,), p.layer, dict(p.params),
                                  {k: np.asarray(v).reshape(-1)[keep] if np.size(v) > 1 else v
                                   for k, v in p.arrays.items()})
                          for p in single.populations]
    single.projections = [p if p.target != readout.name else
                          type(p)(p.name, p.source, p.target, p.kind, p.op, p.weight[keep],
                                  p.indices, dict(p.attrs))
                          for p in single.projections]
    single.readout = {**single.readout, "classes": 10}
    x = digits_batch.numpy()[:48].reshape(-1, 1, 8, 8)
    errors = []
    for graph in (single, float_graph):
        config = compile_graph(graph, dynapse2, seed=0).config
        nominal = class_totals(AnalogSimulator(config).run(x).counts, 10).astype(float)
        spread = []
        for seed in (1, 2):
            drawn = class_totals(AnalogSimulator(config, mismatch=0.1, seed=seed).run(x).counts,
                                 10).astype(float)
            # per class: the mean relative change of its total (a class's gain on this chip)
            gain = drawn.sum(axis=0) / np.maximum(nominal.sum(axis=0), 1.0)
            spread.append(float(np.std(np.log(np.maximum(gain, 1e-3)))))
        errors.append(float(np.mean(spread)))
    assert errors[1] < 0.6 * errors[0], errors


def test_the_board_decoder_sums_a_class_s_readout_tags(quantized_digits):
    config = read_config(f"{quantized_digits.meta['export_dir']}/dynapse2.json")
    channels = config["readout_channels"]
    assert len(channels) == 80 and readout_classes(config) == 10
    assert [c["class"] for c in channels] == [k // 8 for k in range(80)]
    tags = [c["tag"] for c in channels]
    assert len(set(tags)) == 80  # every copy has its own tag
    empty = np.zeros(0, dtype=np.int64)
    sent = InputEvents(*[empty] * 7, sample_start_us=np.array([0, 10_000]), steps=8,
                       dt_us=1000, period_us=10_000)
    # sample 0: class 3 gets 3 spikes over three copies, class 5 two on one copy; sample 1:
    # class 9 once
    events = [SimpleNamespace(tag=tags[k], timestamp=t) for k, t in
              ((24, 100), (25, 200), (31, 300), (40, 50), (40, 60), (79, 10_500))]
    decoded = decode_counts(config, events, sent)
    assert decoded.counts.shape == (2, 10)
    assert decoded.counts[0, 3] == 3 and decoded.counts[0, 5] == 2 and decoded.counts[1, 9] == 1
    assert decoded.predictions.tolist() == [3, 9]
