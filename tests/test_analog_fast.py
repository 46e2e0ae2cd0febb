"""The compiled analog integrator (analog_fast) against the reference integrator (analog._simulate):
the same equations and steps, so the same spikes, on the shipped digits model and on a network with
delay classes, with and without mismatch, under both synapse equations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from test_analog import _counting_graph  # tests/ is on sys.path (pytest prepend)

from eideploy.targets.dynapse2 import analog_fast
from eideploy.targets.dynapse2.analog import AnalogSimulator
from eideploy.targets.dynapse2.compile import DEFAULT_POLICY, compile_graph

pytestmark = pytest.mark.skipif(not analog_fast.available(), reason="numba is not installed")


def _both(config, x, **kwargs):
    fast = AnalogSimulator(config, integrator="fast", **kwargs).run(x, raster=True)
    ref = AnalogSimulator(config, integrator="reference", **kwargs).run(x, raster=True)
    return fast, ref


@pytest.fixture(scope="module")
def digits(quantized_digits):
    """The session's export of the shipped digits model: its configuration and test inputs."""
    from eideploy.data import load_dataset, to_float
    from eideploy.targets.dynapse2.config import read_config

    out = Path(quantized_digits.meta["export_dir"])
    dataset = load_dataset("digits", "test", None, T=8)
    return read_config(out / "dynapse2.json"), to_float(dataset.inputs).numpy()


@pytest.mark.parametrize("mismatch", [0.0, 0.1, 0.2])
def test_the_compiled_integrator_gives_the_reference_spikes_on_the_digits_model(digits, mismatch):
    config, x = digits
    fast, ref = _both(config, x[:12], mismatch=mismatch, seed=5)
    np.testing.assert_array_equal(fast.counts, ref.counts)
    for name in ref.rates:  # every population's rate, not only the readout's counts
        np.testing.assert_allclose(fast.rates[name], ref.rates[name], rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.membrane, ref.membrane, rtol=1e-6, atol=1e-15)
    for name, (times, neurons) in ref.raster.items():
        np.testing.assert_array_equal(np.sort(fast.raster[name][1]), np.sort(neurons))
        np.testing.assert_allclose(np.sort(fast.raster[name][0]), np.sort(times), atol=1e-9)
    assert ref.counts.sum() > 1000  # a busy network, not a silent one


def delay_class_cases(dynapse2):
    """The counting network without and with a CAM delay class, under both synapse equations at
    15% mismatch: ``(config, inputs, simulator keyword arguments)`` per case."""
    target = dynapse2.with_chips(1)
    x = np.random.default_rng(2).uniform(0.2, 1.0, (6, 16))
    for delay in (0.0, 0.4e-3):
        policy = dataclasses.replace(DEFAULT_POLICY, excitation_delay=delay)
        config = compile_graph(_counting_graph(), target, policy=policy).config
        for synapse in ("dpi", "linear"):
            yield config, x, {"mismatch": 0.15, "seed": 1, "synapse": synapse}


def test_the_compiled_integrator_follows_the_linear_synapse_and_delay_classes(dynapse2):
    for config, x, kwargs in delay_class_cases(dynapse2):
        fast, ref = _both(config, x, **kwargs)
        np.testing.assert_array_equal(fast.counts, ref.counts)
        assert ref.counts.sum() > 50


def test_an_unknown_integrator_is_refused(digits):
    config, _ = digits
    with pytest.raises(ValueError, match="integrator must be one of"):
        AnalogSimulator(config, integrator="euler")
