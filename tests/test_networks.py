"""The network architectures against the DeepEISNN specification (spec §1, §3, §6)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eideploy.networks import (
    ARCHITECTURES,
    BNMLP,
    EIMLP,
    EIVGG,
    EIResNet18,
    SpikingNetwork,
    build_network,
    vgg_flat_features,
)
from eideploy.nn import EILayer, EIOptions, ei_init

torch.set_num_threads(2)

CIFAR = (3, 32, 32)
DVS = (2, 48, 48)


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def spec_formula(net: nn.Module) -> int:
    """Spec §6: n_E·d + n_I·d + n_E·n_I + n_I + 2n_E per E-I layer, the readout included."""
    return sum(m.n_e * m.fan_in + m.n_i * m.fan_in + m.n_e * m.n_i + m.n_i + 2 * m.n_e
               for m in net.modules() if isinstance(m, EILayer))


@pytest.mark.parametrize(("name", "num_classes", "millions"), [
    ("ei-vgg8", 10, 5.05), ("ei-vgg11", 10, 11.83), ("ei-vgg16", 10, 18.86),
    ("ei-vgg19", 10, 25.64), ("ei-resnet18", 10, 14.40), ("ei-resnet18", 200, 14.53),
])
def test_parameter_counts_match_the_spec_table(name: str, num_classes: int, millions: float):
    net = build_network(name, in_shape=CIFAR, num_classes=num_classes, T=4)
    assert round(count(net) / 1e6, 2) == millions
    assert count(net) == spec_formula(net)  # no parameter outside the E-I layers


def test_readout_has_two_interneurons_for_ten_classes_and_fifty_for_200():
    assert build_network("ei-vgg8", in_shape=CIFAR, num_classes=10, T=1).classifier.n_i == 2
    assert build_network("ei-resnet18", in_shape=CIFAR, num_classes=200, T=1).fc.n_i == 50


def test_deep_ei_mlp_on_digits_gets_finite_nonzero_gradient_in_every_layer(digits_arrays):
    images, labels = digits_arrays
    net = EIMLP((1, 8, 8), 10, [64] * 8, T=4)
    ei_init(net, images[:256].view(-1, 1, 8, 8))
    x, y = images[256:320].view(-1, 1, 8, 8), labels[256:320]
    nn.functional.cross_entropy(net(x), y).backward()
    ei = [m for m in net.modules() if isinstance(m, EILayer)]
    assert len(ei) == 9
    for layer in ei:
        grad = layer.weight_ee.grad
        assert grad is not None and bool(torch.isfinite(grad).all()), layer.layer_name
        assert float(grad.abs().sum()) > 0, f"{layer.layer_name} got no gradient"


def test_ei_vgg8_trains_forward_and_backward_on_cifar_shaped_input():
    torch.manual_seed(0)
    net = EIVGG(8, CIFAR, 10, T=2)
    ei_init(net, torch.rand(4, *CIFAR))
    logits = net(torch.rand(2, *CIFAR))
    assert logits.shape == (2, 10) and bool(torch.isfinite(logits).all())
    nn.functional.cross_entropy(logits, torch.tensor([3, 7])).backward()
    for name, p in net.named_parameters():
        if name.endswith("weight_ee"):
            assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
    assert float(net.classifier.weight_ee.grad.abs().sum()) > 0


def test_ei_resnet18_forward_gives_finite_logits_and_keeps_activity_nonnegative():
    torch.manual_seed(0)
    net = EIResNet18(CIFAR, 10, T=2)
    records = ei_init(net, torch.rand(4, *CIFAR))
    assert len(records) == 1 + 8 * 2 + 3 + 1  # stem, 16 block convs, 3 shortcuts, readout
    assert all(r["mean"] > 0 for r in records)  # SEW ADD keeps every layer's input >= 0
    with torch.no_grad():
        logits = net(torch.rand(2, *CIFAR))
    assert logits.shape == (2, 10) and bool(torch.isfinite(logits).all())


def test_dvs_sequence_through_vgg8_pools_48_to_1_and_flattens_512():
    assert vgg_flat_features(8, DVS) == 512  # 48 -> 24 -> 12 -> 6 -> 3 -> 1
    torch.manual_seed(0)
    net = EIVGG(8, DVS, 11, T=3)
    assert net.classifier.in_features == 512
    events = torch.poisson(torch.full((3, 3, *DVS), 0.5))  # (B, T, 2, 48, 48) event counts
    ei_init(net, events)
    with torch.no_grad():
        assert net(events).shape == (3, 11)
        assert net.forward_sequence(events).shape == (3, 3, 11)


def test_time_folding_is_time_major_and_static_input_equals_repeated_sequence(digits_arrays):
    net = EIMLP((64,), 10, [32], T=3)
    seq = torch.rand(2, 3, 64)
    folded = net.fold_time(seq)
    assert torch.equal(folded[1 * 2 + 0], seq[0, 1]) and torch.equal(folded[2 * 2 + 1], seq[1, 2])
    x = digits_arrays[0][:8]
    ei_init(net, digits_arrays[0][:128])
    with torch.no_grad():
        static = net(x)
        repeated = net(x.unsqueeze(1).expand(8, 3, 64).contiguous())
        per_step = net.forward_sequence(x)
    assert torch.allclose(static, repeated)
    assert torch.allclose(static, per_step.mean(0))  # logits = (1/T) sum_t o[t]


def test_static_stem_is_computed_once_per_sample_with_identical_outputs_and_gradients():
    torch.manual_seed(0)
    batch = torch.rand(6, *CIFAR)
    net = EIVGG(8, CIFAR, 10, T=3)
    records = ei_init(net, batch)
    # E-I Init still saw all T*B rows: the T copies count in the across-row variance (§4.2).
    folded = net.fold_time(batch)
    assert records[0]["var"] == pytest.approx(float(folded.double().var(0).mean()), rel=1e-9)
    x, y = batch[:2], torch.tensor([1, 2])
    results = []
    for share in (True, False):
        net.share_static_stem = share
        net.zero_grad()
        logits = net(x)
        nn.functional.cross_entropy(logits, y).backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in net.named_parameters()
                                          if p.grad is not None}))
    (shared, g_shared), (full, g_full) = results
    assert torch.allclose(shared, full, atol=1e-5)
    assert g_shared.keys() == g_full.keys() and len(g_full) == 6 * 6 - 3  # readout gains: dead
    for name, grad in g_full.items():
        assert torch.allclose(g_shared[name], grad, rtol=1e-4, atol=1e-6), name


def test_bad_input_shape_names_network_and_expected_shape():
    net = EIVGG(8, CIFAR, 10, T=4)
    with pytest.raises(ValueError) as err:
        net(torch.rand(2, 1, 28, 28))
    assert str(err.value) == ("EIVGG expects input (B, 3, 32, 32) or (B, T=4, 3, 32, 32); "
                              "got (2, 1, 28, 28)")
    with pytest.raises(ValueError, match=r"T=4"):
        net(torch.rand(2, 5, 3, 32, 32))  # a sequence of the wrong length
    with pytest.raises(ValueError, match="floating-point"):
        net(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("name", ["ei-vgg8", "bn-resnet18", "ei-mlp"])
def test_zero_time_steps_is_rejected_at_construction(name: str):
    kwargs = {"widths": [8]} if name.endswith("mlp") else {}
    with pytest.raises(ValueError, match="time steps T"):
        build_network(name, in_shape=CIFAR, num_classes=10, T=0, **kwargs)


def test_too_small_input_for_vgg_is_rejected():
    with pytest.raises(ValueError, match="too small for VGG-19"):
        EIVGG(19, (3, 16, 16), 10, T=1)


@pytest.mark.parametrize(("name", "shape"), [("bn-mlp", (1, 8, 8)), ("bn-vgg8", CIFAR),
                                             ("bn-resnet18", CIFAR)])
def test_bn_baselines_have_batchnorm_and_a_biased_head_and_train(name: str, shape):
    torch.manual_seed(0)
    net = build_network(name, in_shape=shape, num_classes=10, T=2, widths=[32, 32]) \
        if name == "bn-mlp" else build_network(name, in_shape=shape, num_classes=10, T=2)
    assert not any(isinstance(m, EILayer) for m in net.modules())
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(bns) == len(convs) - 1  # one BN per weight layer but the head
    head = convs[-1]
    assert isinstance(head, nn.Linear) and head.bias is not None
    assert all(m.bias is None for m in convs[:-1])
    logits = net(torch.rand(4, *shape))
    assert logits.shape == (4, 10)
    nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert float(head.weight.grad.abs().sum()) > 0


def test_bn_mlp_is_the_same_shape_as_the_ei_mlp():
    bn, ei = BNMLP((64,), 10, [32, 16], T=2), EIMLP((64,), 10, [32, 16], T=2)
    assert [m.weight.shape for m in bn.modules() if isinstance(m, nn.Linear)] == \
        [m.weight_ee.shape for m in ei.modules() if isinstance(m, EILayer)]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_build_network_rebuilds_a_network_from_its_arch_record(name: str):
    extra = {"mlp": {"widths": [16, 16]}, "cnn": {"layers": [8, "P", 16, "P"]}}
    kwargs = extra.get(name.rsplit("-", 1)[1], {})
    net = build_network(name, in_shape=CIFAR, num_classes=10, T=2, **kwargs)
    assert isinstance(net, SpikingNetwork) and net.arch_name == name
    again = build_network(net.arch_name, **net.arch_kwargs)
    assert [(k, v.shape) for k, v in net.state_dict().items()] == \
        [(k, v.shape) for k, v in again.state_dict().items()]


def test_build_network_accepts_options_as_a_dict_and_rejects_unknown_names():
    net = build_network("ei-mlp", in_shape=(64,), num_classes=10, T=2, widths=[16],
                        options={"ei_ratio": 8, "wei_grad_scale": "none"})
    assert net.options == EIOptions(ei_ratio=8, wei_grad_scale="none")
    assert net.layers[1].n_i == 2  # floor(16 / 8)
    with pytest.raises(ValueError, match="known: ei-mlp, ei-vgg8"):
        build_network("vgg8", in_shape=CIFAR, num_classes=10, T=2)
    with pytest.raises(ValueError, match="ei-vgg8 does not take widths"):
        build_network("ei-vgg8", in_shape=CIFAR, num_classes=10, T=2, widths=[3])


def test_ei_layers_are_named_by_module_path():
    net = EIResNet18(CIFAR, 10, T=1)
    assert net.layer2[0].downsample[0].layer_name == "layer2.0.downsample.0"
    assert net.fc.layer_name == "fc"
