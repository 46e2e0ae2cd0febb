"""NeuroBench's metrics of the float model (eideploy.pipeline.neurobench_metrics): the E-I
wrapper computes the model exactly, and NeuroBench's synaptic operations on the shipped digits
model agree with eideploy's own count on the float graph."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from eideploy.cli import app
from eideploy.graph.lowering import lower
from eideploy.pipeline.cost import float_cost
from eideploy.pipeline.neurobench_metrics import (
    NeuroBenchEILinear,
    neurobench_evaluate,
    neurobench_network,
)
from eideploy.train import load_model

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return (d.data[:200] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), d.target[:200]


def test_the_wrapper_computes_the_model_with_linear_connections(digits):
    model, _ = load_model(MODEL, torch.device("cpu"))
    model.eval()
    wrapped = neurobench_network(model)
    layers = [m for m in wrapped.modules() if isinstance(m, NeuroBenchEILinear)]
    assert len(layers) == 2 and not hasattr(layers[-1], "div")  # the readout does not divide
    x = torch.from_numpy(digits[0])
    with torch.no_grad():
        expected, got = model(x), wrapped(x)
    assert float((expected - got).abs().max()) <= 1e-5
    assert torch.equal(expected.argmax(-1), got.argmax(-1))


def test_neurobench_synaptic_operations_agree_with_the_float_graph_count(digits):
    pytest.importorskip("neurobench")
    x, y = digits
    metrics = neurobench_evaluate(MODEL, x, y)
    ops = metrics["SynapticOperations"]
    neurobench_ops = ops["Effective_MACs"] + ops["Effective_ACs"]
    model, _ = load_model(MODEL, torch.device("cpu"))
    own = float_cost(lower(model), x).total_synaptic_events
    assert neurobench_ops == pytest.approx(own, rel=0.01)
    assert 30_000 < own < 100_000  # per sample, a few hundred spikes through sparse synapses
    assert ops["Effective_ACs"] > ops["Effective_MACs"] > 0  # interneuron counts are not 0/1
    assert 0.5 < metrics["ConnectionSparsity"] < 0.8  # budgeted fan-in: most weights are 0
    assert 0.0 < metrics["ActivationSparsity"] < 1.0
    assert metrics["ClassificationAccuracy"] > 0.9
    assert metrics["Footprint"] > 0


def test_evaluate_neurobench_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "neurobench", None)  # import neurobench -> ImportError
    res = CliRunner().invoke(app, ["evaluate", str(MODEL), "--neurobench"])
    assert res.exit_code == 3, res.output
    assert "pip install 'eideploy[neurobench]'" in res.output


def test_evaluate_neurobench_prints_the_metrics(tmp_path):
    pytest.importorskip("neurobench")
    res = CliRunner().invoke(app, ["evaluate", str(MODEL), "--neurobench"])
    assert res.exit_code == 0, res.output
    assert "NeuroBench: footprint" in res.output and "synaptic operations" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--neurobench"])
    assert res.exit_code == 2
