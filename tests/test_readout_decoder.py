"""The per-chip readout decoder (``analog.fit_readout_decoder``): a linear map of one chip's
readout counts, ridge-fitted without labels to the model's own class totals on unlabelled inputs.
It recovers what mismatch does to the readout where per-neuron gains cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eideploy.graph.host import class_totals
from eideploy.targets.dynapse2.analog import accuracy_trials, fit_readout_decoder


def test_the_decoder_undoes_a_mixing_of_the_readout_that_gains_cannot():
    rng = np.random.default_rng(0)
    classes, neurons = 5, 10
    teacher = rng.poisson(3.0, (600, classes)).astype(float)
    teacher[np.arange(600), rng.integers(0, classes, 600)] += 12.0
    mixing = np.abs(rng.normal(0.0, 0.4, (classes, neurons)))
    mixing[np.arange(classes), 2 * np.arange(classes)] += 1.0  # neuron 2k reads class k
    counts = rng.poisson(teacher @ mixing).astype(float)
    decoder = fit_readout_decoder(counts[:400], teacher[:400])
    truth = teacher[400:].argmax(1)
    decoded = np.mean(decoder.predict(counts[400:]) == truth)
    # deciding by the neurons the classes would own (even ones) does far worse: 0.93 vs 0.735
    assert decoded >= 0.9 and decoded >= np.mean(counts[400:, ::2].argmax(1) == truth) + 0.1
    with pytest.raises(ValueError, match="must be"):
        fit_readout_decoder(counts[:3], teacher[:4])


@pytest.fixture(scope="module")
def digits(quantized_digits):
    """The session's export of the shipped digits model: configuration, quantized graph, the
    first 120 test inputs and labels, 300 unlabelled training inputs."""
    from eideploy.data import load_dataset, to_float
    from eideploy.targets.dynapse2.config import read_config

    out = Path(quantized_digits.meta["export_dir"])
    test = load_dataset("digits", "test", None, T=8)
    train = load_dataset("digits", "train", None, T=8)
    return (read_config(out / "dynapse2.json"), quantized_digits,
            to_float(test.inputs).numpy()[:120], test.labels.numpy()[:120],
            to_float(train.inputs).numpy()[:300])


def test_at_20_percent_mismatch_the_decoder_recovers_the_digits_model(digits):
    from eideploy.sim.integer import IntegerSimulator

    config, quantized, x, y, x_cal = digits
    teacher = class_totals(IntegerSimulator(quantized, "exact").run(x_cal).counts,
                           quantized.readout_settings.classes)
    result = accuracy_trials(config, x, y, mismatch=0.2, trials=1, seed=0, calibration=x_cal,
                             teacher=teacher)
    # seed 0 at 20% is a hard draw: ~65% uncalibrated on the whole test split
    assert result.mean < 85.0
    assert result.decoded_per_trial[0] >= 90.0
    assert result.decoded_per_trial[0] >= result.mean + 10.0
