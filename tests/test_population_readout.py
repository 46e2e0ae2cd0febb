"""A trained population readout (``readout_copies`` of ``ei-hw-mlp``): every class has several
readout neurons of its own connectivity and weights, trained through their mean and decided by
their summed spikes. The graph carries it as a population readout (``graph.readout["classes"]``),
so the export adds no copies of its own and the digital chain decides as the trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eideploy.graph.execute import FloatExecutor
from eideploy.graph.host import class_totals
from eideploy.graph.ir import EIGraph
from eideploy.graph.readout import readout_copies
from eideploy.networks.registry import build_network
from eideploy.nn import ei_init
from eideploy.nn.encoding import class_sums
from eideploy.sim.integer import IntegerSimulator

RECIPE = Path(__file__).resolve().parents[1] / "models" / "recipes" / "digits-dynapse2-pop8.yaml"


def test_class_sums_add_each_class_s_neurons_class_major():
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    assert class_sums(values, 3).tolist() == [[6.0, 15.0]]
    assert class_sums(values, 1) is values


def test_the_network_has_copies_readout_neurons_per_class_and_pools_them():
    net = build_network("ei-hw-mlp", in_shape=[1, 8, 8], num_classes=10, T=4,
                        widths=[32], fan_in=16, fan_in_inh=4, theta_out=1.0, readout_copies=3)
    readout = net.ei_layers()[-1]
    assert readout.n_e == 30
    x = torch.rand(5, 1, 8, 8)
    ei_init(net, x)
    per_neuron = net.forward_sequence(x).mean(0)
    assert per_neuron.shape == (5, 30)
    torch.testing.assert_close(net(x), per_neuron.reshape(5, 10, 3).mean(-1))
    assert net.predict(x).shape == (5,)
    assert net.arch_kwargs["readout_copies"] == 3
    with pytest.raises(ValueError, match="readout_copies must be an integer in 1..64"):
        build_network("ei-hw-mlp", in_shape=[1, 8, 8], num_classes=10, T=4, widths=[8],
                      readout_copies=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The population-readout recipe, shortened to a few epochs, trained and exported."""
    from eideploy.pipeline.export import export_model
    from eideploy.train.recipe import load_recipe
    from eideploy.train.trainer import train

    doc = yaml.safe_load(RECIPE.read_text())
    doc["train"]["epochs"] = 4
    doc["target"].update(prune_start=1, prune_epochs=1, qat_epochs=1)
    doc["model"]["args"]["readout_copies"] = 4
    root = tmp_path_factory.mktemp("population")
    (root / "recipe.yaml").write_text(yaml.safe_dump(doc))
    torch.set_num_threads(1)
    train(load_recipe(root / "recipe.yaml"), out_dir=root / "run")
    export_model(root / "run" / "model.pt", root / "export", target="dynapse2")
    return root


def test_the_export_keeps_the_trained_copies_and_adds_none(trained):
    graph = EIGraph.load(trained / "export")
    readout = graph.population(graph.readout_settings.population)
    assert (readout.size, graph.readout_settings.classes, readout_copies(graph)) == (40, 10, 4)
    rows = next(p for p in graph.projections_into(readout.name) if p.kind == "exc")
    sources = ([set(rows.indices[rows.indices[:, 0] == j, 1]) for j in range(4)]
               if rows.indices is not None else
               [set(np.flatnonzero(rows.weight[j])) for j in range(4)])
    assert len({frozenset(s) for s in sources}) > 1  # copies of a class read different neurons


def test_the_digital_chain_decides_as_the_trained_population_model(trained, digits_batch):
    from eideploy.train import load_model

    model, _ = load_model(trained / "run" / "model.pt")
    x = digits_batch[:64].reshape(-1, 1, 8, 8)
    expected = model.predict(x).numpy()
    graph = EIGraph.load(trained / "export")
    quantized = EIGraph.load(trained / "export" / "quantized")
    assert np.mean(FloatExecutor(graph).predict(x.numpy()) == expected) >= 0.98
    integer = IntegerSimulator(quantized).run(x.numpy())
    # The integer chain rounds weights to a 12-bit grid and membranes to Q.16, which moves
    # spikes sitting at a threshold (docs/integer-semantics.md §7): it may decide otherwise than
    # the float executor only where its two best classes are within a few readout spikes.
    differ = integer.predictions() != FloatExecutor(quantized).predict(x.numpy())
    totals = np.sort(class_totals(integer.counts, integer.classes), axis=1)
    margin = totals[:, -1] - totals[:, -2]
    assert differ.sum() <= 2 and np.all(margin[differ] <= 3), (differ.sum(), margin[differ])
    assert np.mean(integer.predictions() == expected) >= 0.9
