"""`eideploy export`, then `evaluate` and `simulate`, on the shipped digits model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from eideploy.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exp") / "digits-dynapse2"
    res = runner.invoke(app, ["export", str(REPO / "models/digits-dynapse2.pt"),
                              "--target", "dynapse2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_exported_float_and_quantized_graphs_keep_the_digits_accuracy(exported):
    res = runner.invoke(app, ["evaluate", str(exported)])
    assert res.exit_code == 0, res.output
    float_acc, quant_acc = (float(v) for v in re.findall(r"([0-9.]+)%", res.output)[:2])
    assert float_acc >= 95.0 and quant_acc >= 95.0


def test_integer_simulator_stays_within_one_point_of_the_quantized_graph(exported):
    quant = runner.invoke(app, ["evaluate", str(exported)])
    quant_acc = float(re.findall(r"quantized graph ([0-9.]+)%", quant.output)[0])
    res = runner.invoke(app, ["simulate", str(exported), "--division", "exact",
                              "--division", "lut:8"])
    assert res.exit_code == 0, res.output
    accs = [float(v) for v in re.findall(r"accuracy ([0-9.]+)%", res.output)]
    assert len(accs) == 2
    assert all(abs(a - quant_acc) <= 1.0 for a in accs), res.output


def test_simulate_refuses_a_directory_that_is_not_an_export(tmp_path):
    res = runner.invoke(app, ["simulate", str(tmp_path)])
    assert res.exit_code == 2
    assert "graph.json" in res.output


def test_analog_spike_times_are_binned_per_model_step_with_the_tail_in_the_last_bin():
    from eideploy.pipeline.simulate import bin_spike_times
    from eideploy.targets.dynapse2.biases import DT_SECONDS

    times = np.array([0.1, 0.9, 1.2, 1.7, 2.5, 9.0]) * DT_SECONDS  # the last after the window
    neurons = np.array([0, 0, 1, 1, 2, 1])
    binned = bin_spike_times({"layers.1.exc": (times, neurons), "unsized": (times, neurons)},
                             {"layers.1.exc": 4}, window=3 * DT_SECONDS)
    assert binned["layers.1.exc"].tolist() == [[2, 0, 0, 0], [0, 2, 0, 0], [0, 1, 1, 0]]
    assert binned["unsized"].shape == (3, 3)  # as wide as its highest spiking neuron
    assert binned["layers.1.exc"].sum() == len(times)
