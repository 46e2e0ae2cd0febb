"""The training-side chip model (eideploy.nn.chip) and chip-faithful fine-tuning."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from eideploy.nn.chip import (
    ChipConstants,
    NeuronConstants,
    _prepare,
    lognormal_factors,
    neuron_substep,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "digits-dynapse2.pt"


def _neurons(n: int, *, gain: float, threshold: float, leak: float, refractory: float,
             reset: str) -> NeuronConstants:
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return NeuronConstants(full(leak), full(gain), full(threshold), full(0.0),
                           full(refractory), torch.zeros(n, dtype=torch.long), reset)


def _drive(c: NeuronConstants, chip: ChipConstants, charge_per_step: torch.Tensor, steps: int
           ) -> torch.Tensor:
    p = _prepare(c, None, chip.i0)
    h = 1.0 / chip.substeps
    u = p.u0.expand(charge_per_step.shape[0], -1).clone()
    timer = torch.zeros_like(u)
    total = torch.zeros_like(u)
    for _ in range(steps * chip.substeps):
        s, u, timer = neuron_substep(u, timer, charge_per_step[:, None].expand_as(u),
                                     p.leak.expand_as(u), p, h, chip.k0, 4.0)
        total = total + s
    return total


# the digits model's currents in model units (docs/analog-model.md §2)
CHIP = ChipConstants(k0=3e-12 * 25e-3 / (0.705 * 1e-8 * 1e-3), i0=5e-13 / 1e-8, eps=0.05,
                     substeps=10)


def test_counter_counts_charge_over_its_threshold_charge_with_gradient_one_over_it():
    # an interneuron (I_gain 167 pA, I_thr 2.5 nA, no leak): the derived gain makes the charge
    # from reset to threshold theta_I = 0.25; T steps of charge q give floor(T q / 0.25)
    inh = _neurons(1, gain=0.0167, threshold=0.25, leak=3e-5, refractory=0.01, reset="count")
    p = _prepare(inh, None, CHIP.i0)
    threshold_charge = CHIP.k0 * float(p.u_thr - p.u0)
    assert threshold_charge == pytest.approx(0.25, rel=0.02)
    q = torch.tensor([0.3, 1.0, 2.2], requires_grad=True)
    counts = _drive(inh, CHIP, q, 8)[:, 0]
    expected = torch.floor(8 * q.detach() / threshold_charge)
    assert torch.all((counts.detach() - expected).abs() <= 1)
    counts.sum().backward()
    assert q.grad is not None
    np.testing.assert_allclose(q.grad.numpy(), 8 / threshold_charge, rtol=0.05)


def test_e_neuron_resets_hard_and_fires_at_most_once_per_refractory_period():
    # an E neuron of the digits export: I_gain 2.13 nA, I_thr 10 nA, I_tau 73.7 pA, t_ref = DT
    exc = _neurons(1, gain=0.213, threshold=1.0, leak=0.00737, refractory=1.0, reset="hard")
    p = _prepare(exc, None, CHIP.i0)
    # the reset-to-threshold charge includes the DPI's exponential start: ~0.155 > eps = 0.05
    assert CHIP.k0 * float(p.u_thr - p.u0) == pytest.approx(0.155, abs=0.01)
    counts = _drive(exc, CHIP, torch.tensor([0.01, 0.5, 50.0]), 8)[:, 0]
    assert counts[0] == 0                    # below the leak's rheobase: silent
    assert 1 <= counts[1] <= 8
    assert counts[2] == 8                    # saturated by the 1-step refractory period


def test_lognormal_mismatch_has_median_one_and_a_shared_core_part():
    gen = torch.Generator().manual_seed(0)
    core = torch.arange(400).repeat_interleave(50)  # 400 cores of 50 devices
    f = lognormal_factors(core, (core.numel(),), 0.1, 0.2, gen).double()
    logs = torch.log(f)
    assert float(logs.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(logs.std()) == pytest.approx(math.sqrt(0.1 ** 2 + 0.2 ** 2), rel=0.05)
    per_core = logs.view(400, 50).mean(1)
    # a core's mean carries its shared part: variance 0.1^2 + 0.2^2 / 50
    assert float(per_core.var()) == pytest.approx(0.01 + 0.04 / 50, rel=0.2)


@pytest.fixture(scope="module")
def digits():
    from eideploy.data import load_dataset, to_float
    from eideploy.targets.dynapse2.config import read_config, write_config
    from eideploy.targets.dynapse2.target import resolve_target
    from eideploy.train.checkpoint import load_model
    from eideploy.train.chip_faithful import compile_for_chip
    from eideploy.train.qat import attach_quantizers

    model, _ = load_model(MODEL)
    model.eval()
    target = resolve_target("dynapse2")
    attach_quantizers(model, target, seed=0)
    config = compile_for_chip(model, target)
    return model, target, config, load_dataset("digits", "test", None, T=model.T), \
        (to_float, read_config, write_config)


@pytest.mark.slow
def test_chip_model_spike_counts_track_the_analog_simulator(digits, tmp_path):
    from eideploy.nn.chip import readout_scores, run_chip
    from eideploy.targets.dynapse2.analog import AnalogSimulator
    from eideploy.train.chip_faithful import chip_constants, chip_layers

    model, _, config, test, (to_float, read_config, write_config) = digits
    write_config(config, tmp_path / "dynapse2.json")
    config = read_config(tmp_path / "dynapse2.json")
    x = to_float(test.inputs)[:60]
    analog = AnalogSimulator(config).run(x.numpy())
    chip, pops = chip_constants(config)
    with torch.no_grad():
        run = run_chip(model.encode_input(x).reshape(model.T, len(x), -1),
                       chip_layers(model, pops), chip)
    ours = {}
    for (name, layer), counts in zip([("layers.1", "exc"), ("layers.3", "readout")], run.counts,
                                     strict=True):
        ours[f"{name}.{layer}"] = counts["exc"].mean(0).numpy()
        ours[f"{name}.inh"] = counts["inh"].mean(0).numpy()
    for name, rate in analog.rates.items():
        a = rate * analog.window
        if name.startswith("layers.1"):  # 48 and 192 neurons: a pattern to correlate
            assert np.corrcoef(a, ours[name])[0, 1] > 0.95, name
        # the mean counts: within 20% on the linear-synapse model, 35% on the full DPI synapse
        # (its start-up loss is not in the chip model)
        assert ours[name].mean() == pytest.approx(a.mean(), rel=0.5), name
    counts = run.counts[-1]["exc"].numpy()
    assert np.corrcoef(counts.ravel(), analog.counts.ravel())[0, 1] > 0.9
    agree = np.mean(readout_scores(run).argmax(1).numpy() == analog.predictions())
    assert agree >= 0.9


@pytest.mark.slow
def test_chip_model_accuracy_falls_with_mismatch_as_the_analog_model_says(digits):
    from eideploy.train.chip_faithful import chip_accuracy, chip_constants

    model, _, config, test, (to_float, *_rest) = digits
    x, y = to_float(test.inputs)[:120], test.labels[:120]
    chip, pops = chip_constants(config)
    nominal = chip_accuracy(model, x, y, chip, pops, mismatch=0.0)[0]
    mismatched = np.mean(chip_accuracy(model, x, y, chip, pops, mismatch=0.1, draws=2))
    assert nominal >= 90.0
    assert mismatched < nominal - 10.0  # the shipped model before fine-tuning is not robust


@pytest.mark.slow
def test_recipe_stage_fine_tunes_after_qat_and_keeps_the_digital_chain_exact(tmp_path):
    """``train.chip_faithful`` after QAT: qat.pt kept, model.pt the kept epoch, every epoch in
    chip_faithful.json; the result is still a graph the integer simulator runs exactly as the
    float executor runs the quantized graph (the E-I graph is unchanged)."""
    import json

    import yaml

    from eideploy.data import load_dataset, to_float
    from eideploy.graph.execute import FloatExecutor
    from eideploy.graph.lowering import lower
    from eideploy.sim.integer import IntegerSimulator
    from eideploy.targets.dynapse2.compile import compile_graph
    from eideploy.targets.dynapse2.config import config_to_graph
    from eideploy.targets.dynapse2.target import resolve_target
    from eideploy.train import load_model, recipe_from_dict, train

    recipe = yaml.safe_load((ROOT / "models" / "recipes" / "digits-dynapse2.yaml").read_text())
    recipe["model"]["args"]["widths"] = [64]
    recipe["train"].update(epochs=3, chip_faithful={"epochs": 1, "batch_size": 256,
                                                    "eval_draws": 1, "max_model_drop": 100.0})
    recipe["target"].update(prune_start=1, prune_epochs=1, qat_epochs=1)
    train(recipe_from_dict(recipe), out_dir=tmp_path, device="cpu", progress=False,
          log=lambda m: None)
    history = json.loads((tmp_path / "chip_faithful.json").read_text())
    assert [row.get("phase") for row in history[:1]] == ["qat"] and len(history) == 2
    assert (tmp_path / "qat.pt").is_file()
    model, checkpoint = load_model(tmp_path / "model.pt")
    assert "chip_faithful" in checkpoint["metrics"]
    compiled = compile_graph(lower(model), resolve_target("dynapse2"))
    qgraph = compiled.qgraph.graph
    test = load_dataset("digits", "test", None, T=model.T)
    x = to_float(test.inputs).numpy()[:64]
    from_graph = IntegerSimulator(qgraph, "lut:8").run(x, return_states=True)
    from_config = IntegerSimulator(config_to_graph(compiled.config), "lut:8").run(
        x, return_states=True)
    np.testing.assert_array_equal(from_config.counts, from_graph.counts)
    for pop, state in from_graph.states.items():
        for key, value in state.items():
            np.testing.assert_array_equal(from_config.states[pop][key], value)
    agree = np.mean(from_graph.predictions() == FloatExecutor(qgraph).predict(x))
    assert agree >= 0.95
