"""The torch backend of the analog simulator (analog_torch, ``integrator="torch"``): the reference
integrator's steps as torch tensors, so the same spikes as the numpy reference, on the CPU here and
on a GPU where there is one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_analog_fast import delay_class_cases  # tests/ is on sys.path (pytest prepend)

from eideploy.targets.dynapse2 import analog_torch
from eideploy.targets.dynapse2.analog import (
    INTEGRATORS,
    AnalogSimulator,
    accuracy_trials,
    network_arrays,
    network_from_arrays,
    run_draws,
    stack_networks,
)


@pytest.fixture(scope="module")
def digits(quantized_digits):
    """The session's export of the shipped digits model: its configuration and test inputs."""
    from eideploy.data import load_dataset, to_float
    from eideploy.targets.dynapse2.config import read_config

    out = Path(quantized_digits.meta["export_dir"])
    dataset = load_dataset("digits", "test", None, T=8)
    return read_config(out / "dynapse2.json"), to_float(dataset.inputs).numpy()


def _pair(config, x, device: str = "cpu", **kwargs):
    ours = AnalogSimulator(config, integrator="torch", device=device, **kwargs).run(x, raster=True)
    ref = AnalogSimulator(config, integrator="reference", **kwargs).run(x, raster=True)
    return ours, ref


@pytest.mark.parametrize("synapse", ["dpi", "linear"])
def test_torch_backend_fires_the_references_spikes_on_the_digits_model(digits, synapse):
    config, x = digits
    ours, ref = _pair(config, x[:12], mismatch=0.1, seed=2, synapse=synapse)
    assert ref.counts.sum() > 1000  # measured: ~1,200 readout spikes over 12 samples
    np.testing.assert_array_equal(ours.counts, ref.counts)
    np.testing.assert_allclose(ours.membrane, ref.membrane, rtol=1e-9)
    for name, (times, neurons) in ref.raster.items():  # sample 0, every population
        np.testing.assert_array_equal(ours.raster[name][1], neurons)
        np.testing.assert_allclose(ours.raster[name][0], times, rtol=0, atol=1e-12)
    for name, rates in ref.rates.items():  # every neuron of every population, not only readout
        np.testing.assert_array_equal(ours.rates[name], rates)


def test_torch_backend_follows_the_delay_classes(dynapse2):
    for config, x, kwargs in delay_class_cases(dynapse2):
        ours, ref = _pair(config, x, **kwargs)
        np.testing.assert_array_equal(ours.counts, ref.counts)
        assert ref.counts.sum() > 50


def test_devices_resolve_or_are_refused_with_a_clear_message():
    assert "torch" in INTEGRATORS
    assert analog_torch.resolve_device("cpu") == torch.device("cpu")
    assert analog_torch.resolve_device("auto").type == ("cuda" if torch.cuda.is_available()
                                                        else "cpu")
    with pytest.raises(ValueError, match="no torch device"):
        analog_torch.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            analog_torch.resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_torch_backend_on_the_gpu_fires_the_cpus_spikes(digits):
    config, x = digits
    gpu = AnalogSimulator(config, integrator="torch", device="cuda", mismatch=0.1, seed=2)
    cpu = AnalogSimulator(config, integrator="torch", device="cpu", mismatch=0.1, seed=2)
    np.testing.assert_array_equal(gpu.run(x[:32]).counts, cpu.run(x[:32]).counts)


def _invoke(*args):
    from typer.testing import CliRunner

    from eideploy.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_validate_takes_the_torch_integrator_and_scores_as_the_reference(quantized_digits,
                                                                          tmp_path):
    export = Path(quantized_digits.meta["export_dir"])
    model = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"
    reports = {}
    for integrator in ("torch", "reference"):
        res = _invoke("validate", model, export, "--limit", "12", "--trials", "1",
                      "--calibrate", "0", "--analog-integrator", integrator,
                      "-o", tmp_path / integrator, "--json")
        assert res.exit_code == 0, res.output
        report = json.loads(res.stdout)["report"]
        # the nominal chip and the mismatch draw
        reports[integrator] = (report["variants"]["analog"]["accuracy"],
                               report["analog"]["mismatch"]["per_trial"])
    assert len(reports["torch"][1]) == 1 and reports["torch"][0] > 50
    assert reports["torch"] == reports["reference"]


@pytest.mark.parametrize(("args", "message"), [
    (("--analog-integrator", "euler"), "use 'piecewise', 'fast', 'reference' or 'torch'"),
    (("--analog-device", "cpu"), "--analog-device is for --analog-integrator torch"),
    (("--analog-integrator", "torch", "--analog-device", "gpu0"), "no torch device")])
def test_a_bad_integrator_or_device_is_refused_before_any_work(quantized_digits, args, message):
    res = _invoke("simulate", Path(quantized_digits.meta["export_dir"]), "--backend", "analog",
                  *args)
    assert res.exit_code == 2
    assert message in res.output


@pytest.mark.parametrize("integrator", ["torch", "piecewise"])
def test_draws_stacked_into_one_simulation_fire_as_each_draw_alone(digits, integrator):
    """``run_draws``: three mismatch draws as one block-diagonal network (the draws a batch
    dimension) give each draw's own counts, rates and raster, bit for bit."""
    config, x = digits
    sims = [AnalogSimulator(config, mismatch=0.1, seed=seed, integrator=integrator)
            for seed in (0, 1, 2)]
    together = run_draws(sims, x[:6], raster=True)
    alone = [sim.run(x[:6], raster=True) for sim in sims]
    assert not np.array_equal(alone[0].counts, alone[1].counts)  # the draws do differ
    for ours, theirs in zip(together, alone, strict=True):
        np.testing.assert_array_equal(ours.counts, theirs.counts)
        np.testing.assert_array_equal(ours.membrane, theirs.membrane)
        for name, rates in theirs.rates.items():
            np.testing.assert_array_equal(ours.rates[name], rates)
        for name, (times, neurons) in theirs.raster.items():
            np.testing.assert_array_equal(ours.raster[name][1], neurons)
            np.testing.assert_array_equal(ours.raster[name][0], times)
    other = AnalogSimulator(config, mismatch=0.1, seed=3, integrator=integrator, step=5e-4)
    with pytest.raises(ValueError, match="differ in more than their mismatch draw"):
        run_draws([sims[0], other], x[:2])


def test_accuracy_trials_with_the_torch_integrator_stack_the_draws_and_score_the_same(digits):
    from eideploy.data import load_dataset

    config, x = digits
    labels = load_dataset("digits", "test", None, T=8).labels.numpy()[:10]
    scores = {integrator: accuracy_trials(config, x[:10], labels, mismatch=0.15, trials=2,
                                          calibration=x[10:14],
                                          simulator_options={"integrator": integrator})
              for integrator in ("torch", "reference")}
    torch_run, reference = scores["torch"], scores["reference"]
    assert torch_run.per_trial == reference.per_trial
    assert torch_run.calibrated_per_trial == reference.calibrated_per_trial
    assert len(torch_run.per_trial) == 2 and min(torch_run.per_trial) > 0


def test_a_network_as_plain_arrays_reads_back_to_the_same_spikes(digits, tmp_path):
    """``network_arrays`` / ``network_from_arrays``: a (stacked) network through an ``.npz``
    without pickles runs to the same counts (what benchmarks/analog_gpu.py ships to a GPU)."""
    config, x = digits
    sims = [AnalogSimulator(config, mismatch=0.1, seed=s) for s in (0, 1)]
    net = stack_networks([s.network for s in sims])
    np.savez(tmp_path / "net.npz", **network_arrays(net))
    with np.load(tmp_path / "net.npz", allow_pickle=False) as f:
        back = network_from_arrays({k: f[k] for k in f.files})
    spikes = sims[0].host.spikes(x[:4])
    spikes = np.broadcast_to(spikes, (8, *spikes.shape[1:])).reshape(8, 4, -1)
    dt, window = sims[0].dt, sims[0].window
    ours = analog_torch.simulate(back, spikes, dt, window, False, device="cpu")[0]
    theirs = analog_torch.simulate(net, spikes, dt, window, False, device="cpu")[0]
    assert ours.sum() > 1000
    np.testing.assert_array_equal(ours, theirs)
