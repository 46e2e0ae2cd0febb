"""Reference DeepEISNN checkpoints (eideploy.train.reference, ``eideploy import --from
deepeisnn``): a state dict in the reference's naming (spec §8), made by renaming one of our
trained-from-init networks, loads back into the same network and computes the same outputs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from eideploy.cli import app
from eideploy.networks import build_network
from eideploy.networks.vgg import VGG_CONFIGS
from eideploy.nn.init import ei_init
from eideploy.train import CheckpointError, load_model
from eideploy.train.reference import reference_state_to_model

CIFAR = (3, 32, 32)


@pytest.fixture(scope="module")
def vgg8() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_network("ei-vgg8", in_shape=CIFAR, num_classes=10, T=2)
    ei_init(net, torch.rand(4, *CIFAR))
    with torch.no_grad():  # trained-looking: a signed bias, gains away from 1
        for layer in (net.features[0], net.classifier):
            layer.bias.uniform_(-0.2, 0.2)
            layer.gain_e.uniform_(0.5, 1.5)
    return net.eval()


def reference_state(net: torch.nn.Module, first: int = 2) -> dict[str, torch.Tensor]:
    """Our VGG's weights under the reference's names (spec §3, §8): a ``layers`` Sequential
    whose E-I conv (``conv_ee``/``conv_ie``) is followed by its E-I norm (weight_ei, gain_i,
    gain_e, bias as (n, 1, 1)), split, LIF, merge and dropout (6 modules per conv unit), a pool
    one module, a flatten, then the linear readout (weight_ee, weight_ie) and its norm
    ((1, n) vectors). Static input starts at ``layers.2``, DVS input at ``layers.1``."""
    convs = [m for m in net.features if hasattr(m, "weight_ee")]
    state: dict[str, torch.Tensor] = {}
    index = first
    for entry in VGG_CONFIGS[8]:
        if entry == "P":
            index += 1
            continue
        conv = convs.pop(0)
        state[f"layers.{index}.conv_ee.weight"] = conv.weight_ee.detach().clone()
        state[f"layers.{index}.conv_ie.weight"] = conv.weight_ie.detach().clone()
        state[f"layers.{index + 1}.weight_ei"] = conv.weight_ei.detach().clone()
        for name in ("gain_i", "gain_e", "bias"):
            state[f"layers.{index + 1}.{name}"] = getattr(conv, name).detach().view(-1, 1, 1)
        index += 6
    index += 1  # Flatten
    fc = net.classifier
    state[f"layers.{index}.weight_ee"] = fc.weight_ee.detach().clone()
    state[f"layers.{index}.weight_ie"] = fc.weight_ie.detach().clone()
    state[f"layers.{index + 1}.weight_ei"] = fc.weight_ei.detach().clone()
    for name in ("gain_i", "gain_e", "bias"):
        state[f"layers.{index + 1}.{name}"] = getattr(fc, name).detach().view(1, -1)
    return state


def test_the_reference_names_are_those_of_the_spec(vgg8):
    keys = list(reference_state(vgg8))
    assert keys[:2] == ["layers.2.conv_ee.weight", "layers.2.conv_ie.weight"]
    assert keys[2:6] == [f"layers.3.{n}" for n in ("weight_ei", "gain_i", "gain_e", "bias")]
    assert "layers.38.weight_ee" in keys and "layers.39.bias" in keys


def test_a_reference_training_checkpoint_imports_with_equal_outputs(vgg8, tmp_path):
    ref = tmp_path / "ckpt-best.pth"
    torch.save({"next_epoch": 301, "model_state_dict": reference_state(vgg8),
                "best_val_acc": 87.03,
                "config": {"dataset": "CIFAR10", "T": 2, "arch": "VGG", "num_layers": 8,
                           "ei_ratio": 4, "neuron": {"tau": 2.0}},
                "rng_state": torch.get_rng_state(), "np_rng_state": np.random.get_state(),
                "py_rng_state": random.getstate()}, ref)
    out = tmp_path / "model.pt"
    res = CliRunner().invoke(app, ["import", str(ref), "--from", "deepeisnn", "--arch",
                                   "ei-vgg8", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "12 reference modules" in res.output
    model, checkpoint = load_model(out)
    assert checkpoint["recipe"]["data"] == {"dataset": "cifar10"}
    assert checkpoint["metrics"]["reference_best_val_acc"] == pytest.approx(87.03)
    x = torch.rand(3, *CIFAR)
    with torch.no_grad():
        expected, got = vgg8(x), model(x)
    assert expected.abs().max() > 0
    assert torch.equal(got, expected)


def test_a_dvs_state_dict_shifted_by_one_maps_by_order(vgg8):
    imported = reference_state_to_model(reference_state(vgg8, first=1), "ei-vgg8",
                                        in_shape=CIFAR, T=2)
    assert imported.layers["features.0"] == ("layers.1", "layers.2")
    assert imported.layers["classifier"] == ("layers.37", "layers.38")
    x = torch.rand(2, *CIFAR)
    with torch.no_grad():
        assert torch.equal(imported.model(x), vgg8(x))


def test_a_wrong_architecture_or_a_baseline_is_refused_naming_the_key(vgg8, tmp_path):
    state = reference_state(vgg8)
    with pytest.raises(CheckpointError, match="ei-vgg11 has 9 E-I layers; is --arch right"):
        reference_state_to_model(state, "ei-vgg11", in_shape=CIFAR, T=2)
    state["layers.2.bn.running_mean"] = torch.zeros(64)
    with pytest.raises(CheckpointError, match="layers.2.bn.running_mean"):
        reference_state_to_model(state, "ei-vgg8", in_shape=CIFAR, T=2)
    bare = tmp_path / "bare.pth"
    torch.save(reference_state(vgg8), bare)
    res = CliRunner().invoke(app, ["import", str(bare), "--from", "deepeisnn", "--arch",
                                   "ei-vgg8", "-o", str(tmp_path / "m.pt"), "--in-shape",
                                   "3,64,64"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--in-shape" in res.output


def test_a_file_with_code_in_it_is_not_run(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {}, "config": Path("x")}, evil)
    res = CliRunner().invoke(app, ["import", str(evil), "--from", "deepeisnn", "--arch",
                                   "ei-vgg8", "-o", str(tmp_path / "m.pt")])
    assert res.exit_code == 2 and "refused to load" in res.output
