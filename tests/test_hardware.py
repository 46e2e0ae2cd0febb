"""Hardware-aware training: models that fit DYNAP-SE2 by construction (docs/hardware-aware.md).

Budgets per neuron, spikes in and out, tied per-core parameters, quantization-aware training,
and the shipped digits model, checked end to end on the real 8x8 digits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from eideploy.data import load_dataset
from eideploy.graph import EIGraph, lower, run
from eideploy.graph.execute import FloatExecutor, accuracy
from eideploy.graph.execute import if_encode as np_if_encode
from eideploy.graph.execute import if_readout as np_if_readout
from eideploy.networks import build_network
from eideploy.nn import EIOptions, ei_init, project_nonnegative_
from eideploy.nn.connectivity import local_mask, positions, pruning_budget, top_k_mask
from eideploy.nn.encoding import if_encode, if_readout, readout_decision
from eideploy.pipeline.train import train_and_summarise
from eideploy.targets.dynapse2 import check, compile_graph, fan_in, load_target
from eideploy.targets.dynapse2.quantize import core_levels
from eideploy.train import recipe_from_dict
from eideploy.train.checkpoint import load_model, save_checkpoint
from eideploy.train.qat import attach_quantizers, detach_quantizers
from eideploy.train.recipe import RecipeError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "digits-dynapse2.pt"
DYNAPSE2 = load_target("dynapse2")
HW_OPTIONS = EIOptions(inhibitory="floor", theta_i=0.25, bias="none",
                       stabilisation="fixed-eps", eps=0.05)


def hw_net(connectivity=("random", "random"), fan_in=(24, 32), fan_in_inh=4, seed=3,
           options=HW_OPTIONS, theta_out=1.0, encoding="if"):
    return build_network("ei-hw-mlp", in_shape=(1, 8, 8), num_classes=10, T=4, widths=[32],
                         fan_in=list(fan_in), fan_in_inh=fan_in_inh,
                         connectivity=list(connectivity), encoding=encoding,
                         theta_out=theta_out, seed=seed, options=options)


def images(digits_arrays, n=None) -> torch.Tensor:
    x = digits_arrays[0].view(-1, 1, 8, 8)
    return x if n is None else x[:n]


def tiny_hw_recipe(**target) -> dict:
    return {
        "name": "tiny-digits-dynapse2", "seed": 7,
        "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 360},
        "model": {"arch": "ei-hw-mlp", "T": 4, "args": {"widths": [32]},
                  "options": {"inhibitory": "floor", "theta_i": 0.25}},
        "train": {"epochs": 2, "lr": 0.05, "init_lr": 1e-3, "warmup_epochs": 0.2},
        "target": {"fan_in": [24, 32], "fan_in_inh": 4, "connectivity": ["random", "pruned"],
                   "prune_start": 0, "prune_epochs": 2, "qat_epochs": 1, **target},
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hw-run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small only waits on a second thread
    try:
        result = train_and_summarise(recipe_from_dict(tiny_hw_recipe()), out_dir=out, device="cpu",
                       progress=False, log=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    return out, result


# --------------------------------------------------------------------------- budgets
def test_a_budgeted_network_trained_a_few_steps_stays_inside_every_limit_of_the_chip(tiny_run):
    out, _ = tiny_run
    model, _ = load_model(out / "model.pt")
    graph = lower(model)
    report = check(graph, DYNAPSE2)
    assert report.ok, report.format()
    cam = DYNAPSE2.cam_entries_per_neuron
    for pop in graph.populations:
        if pop.role == "input":
            continue
        entries = fan_in(graph, pop.name)
        total = entries["exc"] + entries["sub"] + entries["div"]  # AMPA + GABA + SHUNT
        assert int(total.max()) <= cam, pop.name
        layer = dict(model.named_modules())[pop.layer]
        k_in, k_inh = model.budgets[model.ei_layers().index(layer)]
        assert int(entries["exc"].max()) <= k_in  # K_in inputs per E and I neuron
        if pop.role in ("exc", "readout"):
            assert int(entries["sub"].max()) <= k_inh
            assert np.array_equal(entries["div"], entries["sub"] if pop.role == "exc"
                                  else np.zeros_like(entries["div"]))
    # after export quantization: at most 15 non-zero levels per core, from 4 base weights, one
    # DC (b_E) and one gain (g_E folded: 1) per core
    compiled = compile_graph(graph, DYNAPSE2)
    qgraph = compiled.qgraph
    assert compiled.summary()["cam"]["max_per_neuron"] <= cam
    for codebook in qgraph.codebooks.values():
        assert codebook.bases.shape == (DYNAPSE2.base_weights_per_core,)
        assert np.count_nonzero(np.unique(core_levels(codebook))) <= 15
    for pop in qgraph.graph.populations:
        if pop.role == "input":
            continue
        location = compiled.placement.location[pop.name]
        assert np.all(pop.arrays["bias"] == 0.0)  # bias: none -> b_E frozen at 0
        for key in {tuple(loc[:2]) for loc in location.tolist()}:
            on_core = np.all(location[:, :2] == key, axis=1)
            assert np.unique(pop.arrays["bias"][on_core]).size == 1
            assert qgraph.dc[key] == 0.0
        if pop.role == "exc":
            assert np.all(pop.arrays["gain_e"] == 1.0)
    for proj in qgraph.graph.projections:
        target_pop = qgraph.graph.population(proj.target)
        cores = compiled.placement.location[target_pop.name][proj.indices[:, 0], :2]
        dendrite = DYNAPSE2.dendrite(proj.kind)
        for key in {tuple(c) for c in cores.tolist()}:
            scale = qgraph.dendrite_scales[key][dendrite]
            values = proj.weight[np.all(cores == key, axis=1)] / scale
            levels = core_levels(qgraph.codebooks[key])
            assert np.all(np.min(np.abs(values[:, None] - levels[None, :]), axis=1) < 1e-9)


def test_a_completed_hardware_run_records_its_fit_on_the_chip_in_metrics_json(tiny_run):
    out, result = tiny_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_test_accuracy"] == pytest.approx(result.best_accuracy)  # block added
    hardware = metrics["hardware"]
    assert set(hardware) == {"float", "model"}  # QAT ran: the float phase's best and QAT's best
    for record in hardware.values():
        assert record["drc_violations"] == 0
        assert record["chips"] == 1 and record["max_fan_in"] <= DYNAPSE2.cam_entries_per_neuron
        # 2 + 1 epochs of a 32-unit network: well above chance (10%); the exported (quantized)
        # graph within a few points of the float graph it came from
        assert record["torch_accuracy"] > 50.0
        assert abs(record["exported_accuracy"] - record["graph_accuracy"]) < 10.0


def test_training_prunes_learned_layers_to_their_budget_and_keeps_masked_weights_zero(tiny_run):
    out, result = tiny_run
    model, checkpoint = load_model(out / "model.pt")
    hidden, readout = model.ei_layers()
    assert torch.equal(hidden.mask_ee.sum(1), torch.full((32,), 24.0))  # random, fixed
    assert torch.equal(readout.mask_ee.sum(1), torch.full((10,), 32.0))  # pruned to K_in
    assert torch.equal(readout.mask_ie.sum(1), torch.full((2,), 32.0))
    assert torch.equal(readout.mask_ei.sum(1), torch.full((10,), 2.0))  # K_inh capped by n_I
    for layer in (hidden, readout):
        layer.requires_grad_(False)
        assert float((layer.weight_ee * (1 - layer.mask_ee)).abs().max()) == 0.0
        assert float((layer.weight_ei * (1 - layer.mask_ei)).abs().max()) == 0.0
        assert torch.all(layer.bias == 0)
    assert checkpoint["options"]["bias"] == "none"
    assert checkpoint["options"]["stabilisation"] == "fixed-eps"  # divisor: chip
    assert (out / "float.pt").is_file()  # the float phase's best, before QAT
    assert result.epochs == 3 and result.history[-1]["qat"] == 1.0
    assert 0 < result.history[-1]["qat_relative_rmse"] < 0.5


def test_pruning_budget_shrinks_linearly_from_dense_to_the_budget():
    assert [pruning_budget(64, 32, e, 1, 4) for e in range(7)] == [64, 56, 48, 40, 32, 32, 32]
    assert [pruning_budget(64, 32, e, 0, 1) for e in range(2)] == [32, 32]
    mask = top_k_mask(torch.tensor([[0.1, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]), 2)
    assert mask.tolist() == [[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]  # ties: lower index


def test_local_receptive_fields_draw_every_input_from_a_window_around_the_neuron():
    rng = np.random.default_rng(0)
    mask = local_mask(1024, (1, 28, 28), 48, rng, window=10)
    assert np.all(mask.sum(1) == 48)
    centre = positions(1024, 28, 28)
    ys, xs = np.divmod(np.arange(784), 28)
    for n in range(0, 1024, 37):
        chosen = mask[n] > 0
        for coord, c in ((ys[chosen], centre[n, 0]), (xs[chosen], centre[n, 1])):
            # inside one 10-pixel window (moved inward at the borders) holding the centre
            assert coord.max() - coord.min() <= 9
            assert coord.max() - 9 <= int(c) <= coord.min() + 9
    assert np.all(mask.sum(0) > 0)  # the tiled fields cover the whole image


def test_ei_init_uses_the_actual_fan_in_and_balances_over_the_heard_interneurons(
        digits_arrays):
    net = hw_net()
    stats = ei_init(net, images(digits_arrays, 256))
    hidden = net.ei_layers()[0]
    assert stats[0]["fan_in"] == 24 and hidden.fan_in == 24
    m2, v = stats[0]["mean_sq"], stats[0]["var"]
    assert stats[0]["beta"] == pytest.approx(math.sqrt(v / (24 * (m2 + v))))
    # W_EI: each E neuron's row spreads theta_I (floor interneurons count I / theta_I spikes)
    # over exactly the K_inh interneurons it hears
    rows = hidden.weight_ei.sum(1)
    torch.testing.assert_close(rows, torch.full_like(rows, 0.25))
    assert torch.equal((hidden.weight_ei > 0).float(), hidden.mask_ei)
    assert torch.all(hidden.weight_ee[hidden.mask_ee == 0] == 0)


def test_recipe_validation_rejects_a_budget_over_the_cam_entries_with_a_clear_message():
    with pytest.raises(RecipeError, match=r"K_in \+ 2\*K_inh = 40 \+ 2\*13 = 66 exceeds the 64"):
        recipe_from_dict(tiny_hw_recipe(fan_in=40, fan_in_inh=13))
    with pytest.raises(RecipeError, match="target.fan_in"):
        recipe_from_dict(tiny_hw_recipe(fan_in=[24, 70]))
    bad = tiny_hw_recipe()
    bad["model"]["args"]["fan_in"] = 12
    with pytest.raises(RecipeError, match="set by the target section"):
        recipe_from_dict(bad)
    assert recipe_from_dict(tiny_hw_recipe(fan_in=48, fan_in_inh=8)).target.fan_in == 48


# --------------------------------------------------------------------------- spikes in, out
def test_if_encoding_is_deterministic_with_the_nearest_spike_count():
    levels = torch.arange(17, dtype=torch.float32) / 16  # the digits' intensities k/16
    x_seq = levels.expand(8, 1, 17).clone()
    spikes = if_encode(x_seq)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert spikes.sum(0)[0].tolist() == [math.floor(8 * k / 16 + 0.5) for k in range(17)]
    assert torch.equal(spikes, if_encode(x_seq))
    assert np.array_equal(np_if_encode(x_seq.numpy()), spikes.numpy())  # the graph's mirror


def test_spiking_readout_count_and_membrane_hold_the_summed_current_and_decide_as_argmax():
    gen = torch.Generator().manual_seed(0)
    o_seq = torch.randn(8, 500, 10, generator=gen) * 2.0
    counts, membrane = if_readout(o_seq, 0.5)
    torch.testing.assert_close(counts * 0.5 + membrane, o_seq.sum(0), rtol=0, atol=1e-5)
    # with membranes in [0, theta) (always so for non-negative currents) the decision by count,
    # ties broken by membrane, is exactly the argmax of the summed current
    positive = o_seq.abs()
    counts, membrane = if_readout(positive, 0.5)
    assert float(membrane.min()) >= 0 and float(membrane.max()) < 0.5
    assert torch.equal(readout_decision(counts, membrane), positive.sum(0).argmax(1))
    np_counts, np_membrane = np_if_readout(positive.numpy(), 0.5)
    assert np.array_equal(np_counts, counts.numpy())
    assert np.array_equal(np_membrane, membrane.numpy())


def test_bernoulli_encoding_fires_at_the_intensity_and_repeats_in_evaluation(digits_arrays):
    net = hw_net(encoding="bernoulli")
    x = images(digits_arrays, 256)
    ei_init(net, x)
    net.eval()
    spikes = net.encode_input(x)
    assert torch.equal(spikes, net.encode_input(x))  # seeded per batch in evaluation
    assert float(spikes.mean()) == pytest.approx(float(x.mean()), abs=0.01)
    graph = lower(net)
    assert graph.input == {"population": "input", "encoding": "bernoulli", "seed": 3}
    executor = FloatExecutor(graph)
    assert np.array_equal(executor.predict(x.numpy()), executor.predict(x.numpy()))


def test_lowered_hardware_graph_runs_the_torch_spikes_and_readout(digits_arrays):
    net = hw_net(connectivity=("random", "pruned"))
    x = images(digits_arrays)
    ei_init(net, x[:256])
    net.prune_()
    net.eval()
    graph = lower(net)
    assert graph.input["encoding"] == "if"
    assert graph.readout["mode"] == "spiking" and graph.readout["theta_out"] == 1.0
    assert graph.population("layers.3.readout").params["v_threshold"] == 1.0
    assert all(p.params["response"] == "floor" for p in graph.populations if p.role == "inh")
    assert check(graph, DYNAPSE2).ok
    with torch.no_grad():
        logits = net(x).numpy()
        predicted = net.predict(x).numpy()
    assert np.abs(run(graph, x.numpy()) - logits).max() < 1e-5
    executor = FloatExecutor(graph)
    assert np.array_equal(executor.predict(x.numpy()), predicted)
    counts, membrane = executor.readout_spikes(x[:64].numpy())
    np.testing.assert_allclose(counts + membrane, logits[:64] * net.T, atol=1e-4)


def test_qat_forward_is_the_exported_quantized_graph(digits_arrays):
    net = hw_net()
    x = images(digits_arrays, 300)
    ei_init(net, x)
    net.eval()
    compiled = compile_graph(lower(net), DYNAPSE2)
    attach_quantizers(net, DYNAPSE2)
    with torch.no_grad():
        fake = net(x).numpy()
    assert np.abs(fake - run(compiled.qgraph.graph, x.numpy())).max() < 1e-5
    detach_quantizers(net)
    with torch.no_grad():
        assert np.abs(net(x).numpy() - run(lower(net), x.numpy())).max() < 1e-5


def test_masks_survive_the_checkpoint_round_trip(digits_arrays, tmp_path):
    net = hw_net(connectivity=("random", "pruned"))
    x = images(digits_arrays, 128)
    ei_init(net, x)
    net.prune_()
    save_checkpoint(tmp_path / "model.pt", net)
    again, _ = load_model(tmp_path / "model.pt")
    for a, b in zip(net.ei_layers(), again.ei_layers(), strict=True):
        for name in ("mask_ee", "mask_ie", "mask_ei"):
            assert torch.equal(getattr(a, name), getattr(b, name))
        assert a.fan_in == b.fan_in
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), again(x))


def test_bias_per_core_is_one_value_per_chunk_of_neurons():
    options = EIOptions(inhibitory="floor", bias="per_core", bias_group=8)
    net = hw_net(options=options)
    hidden = net.ei_layers()[0]
    with torch.no_grad():
        hidden.bias.copy_(torch.arange(32.0))
    project_nonnegative_(net)
    assert hidden.bias.view(4, 8).unique(dim=1).shape == (4, 1)
    assert hidden.bias[:8].tolist() == [3.5] * 8


# --------------------------------------------------------------------------- the shipped model
def test_shipped_digits_model_exports_without_violations_and_keeps_its_accuracy(tmp_path):
    from eideploy.pipeline.export import export_model

    assert SHIPPED.is_file(), "models/digits-dynapse2.pt is missing (docs/hardware-aware.md)"
    assert SHIPPED.stat().st_size < 2_000_000
    result = export_model(SHIPPED, tmp_path / "out", target="dynapse2")
    assert result.compiled.drc.ok
    quantized = EIGraph.load(tmp_path / "out" / "quantized")
    test = load_dataset("digits", "test")
    assert accuracy(quantized, test.inputs.numpy(), test.labels.numpy()) >= 95.0
