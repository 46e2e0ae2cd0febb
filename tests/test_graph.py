"""The E-I graph: lowering from torch, the float executor, explicit synapses, files (DESIGN §1.2).

Every network here is built with ``build_network``, initialised by E-I Init on a real digits
batch and then perturbed (gains and biases away from their init values, weights jittered), so
each term of Eq. 14 matters. The float executor must give the torch model's logits to 1e-5.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eideploy.graph import (
    EIGraph,
    GraphError,
    Population,
    Projection,
    accuracy,
    lower,
    run,
    unroll_conv,
)
from eideploy.graph.execute import avg_pool, conv2d, ei_integrate, lif_multistep, stabilise
from eideploy.graph.ir import DivisionSettings, InputSettings, ReadoutSettings
from eideploy.networks import build_network
from eideploy.nn import EIOptions, ei_init
from eideploy.nn import functional as EF
from eideploy.train.checkpoint import load_model, save_checkpoint

torch.set_num_threads(2)

MLP = {"name": "ei-mlp", "widths": [64, 32]}
CNN = {"name": "ei-cnn", "layers": [8, "P", 16, "P"]}
#: VGG-8's plan (5 conv, each followed by a pool, down to 1x1, then the FC readout) at 1/8 width.
VGG8_SHAPED = {"name": "ei-cnn", "layers": [8, "P", 16, "P", 32, "P", 64, "P", 64, "P"]}


def perturb_(net: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter off its init value, keeping Dale's law (all but the bias >= 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.mul_(1.0 + 0.2 * torch.rand(p.shape, generator=gen))


def digits_images(digits_arrays, shape: tuple[int, int, int]) -> torch.Tensor:
    """The digits as (C, H, W) maps: 8x8, centre-cropped, or upsampled (nearest) and tiled."""
    images = digits_arrays[0].view(-1, 1, 8, 8)
    c, h, w = shape
    if h < 8:
        top = (8 - h) // 2
        images = images[:, :, top:top + h, top:top + w]
    elif h > 8:
        images = images.repeat_interleave(h // 8, 2).repeat_interleave(w // 8, 3)
    return images.expand(-1, c, -1, -1).contiguous()


def make_net(digits_arrays, spec: dict, shape=(1, 8, 8), options: EIOptions | None = None,
             T: int = 4) -> tuple[torch.nn.Module, torch.Tensor]:
    spec = dict(spec)
    images = digits_images(digits_arrays, shape)
    net = build_network(spec.pop("name"), in_shape=shape, num_classes=10, T=T, options=options,
                        **spec)
    ei_init(net, images[:256])
    perturb_(net)
    return net.eval(), images


def torch_logits(net: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return net(x).numpy()


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# --------------------------------------------------------------------------- lowering
def test_lowered_mlp_has_the_e_i_circuit_of_every_layer(digits_arrays):
    net, _ = make_net(digits_arrays, MLP)
    graph = lower(net)
    roles = [(p.name, p.role, p.shape) for p in graph.populations]
    assert roles == [("input", "input", (1, 8, 8)),
                     ("layers.1.inh", "inh", (16,)), ("layers.1.exc", "exc", (64,)),
                     ("layers.3.inh", "inh", (8,)), ("layers.3.exc", "exc", (32,)),
                     ("layers.5.inh", "inh", (2,)), ("layers.5.readout", "readout", (10,))]
    kinds = {p.name: (p.source, p.target, p.kind, p.op) for p in graph.projections}
    assert kinds["layers.1.ee"] == ("input", "layers.1.exc", "exc", "dense")
    assert kinds["layers.1.ie"] == ("input", "layers.1.inh", "exc", "dense")
    assert kinds["layers.3.sub"] == ("layers.3.inh", "layers.3.exc", "sub", "pointwise")
    assert kinds["layers.3.div"] == ("layers.3.inh", "layers.3.exc", "div", "pointwise")
    assert "layers.5.div" not in kinds  # the readout has no division (spec §3)
    assert graph.readout == {"population": "layers.5.readout", "mode": "current", "classes": 10}
    assert graph.division == {"stabilisation": "adaptive", "eps": 1e-3}
    assert graph.input == {"population": "input", "encoding": "direct"}
    assert graph.T == 4 and graph.name == "ei-mlp"
    assert graph.meta["architecture"] == {"name": "ei-mlp", "kwargs": net.arch_kwargs}
    assert graph.meta["options"] == net.options.to_dict()
    layer = net.layers[3]
    div = graph.projections[[p.name for p in graph.projections].index("layers.3.div")]
    expected = (layer.weight_ei * layer.gain_i[None, :]).detach().numpy()
    assert np.array_equal(div.weight, expected)  # g_I folded, bit for bit as torch forms it
    exc = graph.population("layers.3.exc")
    assert exc.params == {"tau": 2.0, "v_threshold": 1.0, "neuron": "lif"}
    assert graph.population("layers.3.inh").params == {"response": "identity", "theta_i": 1.0}
    assert np.array_equal(exc.arrays["bias"], layer.bias.detach().numpy())
    for array in [*(p.weight for p in graph.projections), exc.arrays["gain_e"]]:
        assert array.dtype == np.float32
    for param in net.parameters():  # copies: the graph never aliases the model's storage
        for array in [*(p.weight for p in graph.projections),
                      *(a for pop in graph.populations for a in pop.arrays.values())]:
            assert not np.shares_memory(array, param.detach().numpy())


def test_lowered_cnn_keeps_convolutions_and_folds_pools_into_the_next_projections(
        digits_arrays):
    net, _ = make_net(digits_arrays, CNN)
    graph = lower(net, name="digits-cnn", meta={"note": "test"})
    assert graph.name == "digits-cnn" and graph.meta["note"] == "test"
    shapes = {p.name: p.shape for p in graph.populations}
    assert shapes == {"input": (1, 8, 8), "features.0.inh": (2, 8, 8),
                      "features.0.exc": (8, 8, 8), "features.3.inh": (4, 4, 4),
                      "features.3.exc": (16, 4, 4), "classifier.inh": (2,),
                      "classifier.readout": (10,)}
    proj = {p.name: p for p in graph.projections}
    assert proj["features.0.ee"].op == "conv" and proj["features.0.ee"].weight.shape == (8, 1, 3, 3)
    assert proj["features.0.ee"].attrs == {"stride": 1, "padding": 1}
    assert proj["features.3.ie"].attrs == {"pool": 2, "stride": 1, "padding": 1}
    # Flatten after the last pool: a dense projection over the pooled (16, 2, 2) map, C-major.
    assert proj["classifier.ee"].op == "dense" and proj["classifier.ee"].attrs == {"pool": 2}
    assert proj["classifier.ee"].weight.shape == (10, 64)
    assert graph.population("features.3.exc").arrays["gain_e"].shape == (16,)


# --------------------------------------------------------------------------- the float executor
def test_executor_equals_torch_on_all_digits_for_the_e_i_mlp(digits_arrays):
    net, images = make_net(digits_arrays, MLP)
    graph = lower(net)
    logits, reference = run(graph, images.numpy()), torch_logits(net, images)
    diff = max_diff(logits, reference)
    assert logits.shape == (len(images), 10) and logits.dtype == np.float32
    assert diff < 1e-5, diff
    labels = digits_arrays[1].numpy()
    torch_acc = 100.0 * float((reference.argmax(1) == labels).mean())
    assert accuracy(graph, images.numpy(), labels, batch_size=300) == pytest.approx(torch_acc)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 6, 6)], ids=["8x8", "6x6-odd-pools"])
@pytest.mark.parametrize("options", [
    EIOptions(),
    EIOptions(stabilisation="fixed-eps", eps=1e-2),
    EIOptions(inhibitory="floor", theta_i=0.5),
], ids=["adaptive", "fixed-eps", "floor-interneurons"])
def test_executor_equals_torch_for_the_e_i_cnn(digits_arrays, shape, options):
    net, images = make_net(digits_arrays, CNN, shape, options)
    x = images[256:1024]
    graph = lower(net)
    assert graph.division == {"stabilisation": options.stabilisation, "eps": options.eps}
    logits, states = run(graph, x.numpy(), return_states=True)
    diff = max_diff(logits, torch_logits(net, x))
    assert diff < 1e-5, diff
    # The divisor had exact zeros (every interneuron of a pixel silent), so Stab() was exercised.
    assert any((states[name]["output"] == 0).all(axis=2).any()
               for name in ("features.0.inh", "features.3.inh"))
    spikes = states["features.0.exc"]["output"]
    assert spikes.shape == (4, len(x), 8, *shape[1:]) and set(np.unique(spikes)) == {0.0, 1.0}
    readout = states["classifier.readout"]["output"]
    assert max_diff(readout.mean(0), logits) < 1e-6


def test_floor_interneurons_emit_integer_spike_counts(digits_arrays):
    net, images = make_net(digits_arrays, CNN, options=EIOptions(inhibitory="floor",
                                                                 theta_i=0.5))
    _, states = run(lower(net), images[:64].numpy(), return_states=True)
    r_i, i_ie = states["features.0.inh"]["output"], states["features.0.inh"]["current"]
    assert np.array_equal(r_i, np.floor(np.maximum(i_ie, 0) / np.float32(0.5)))
    assert r_i.max() >= 2  # counts above one spike per step occur on real data


def test_executor_takes_time_sequences_as_the_torch_model_does(digits_arrays):
    net, images = make_net(digits_arrays, MLP)
    gen = torch.Generator().manual_seed(1)
    seq = images[:200, None].expand(-1, 4, -1, -1, -1)
    seq = seq * (torch.rand(seq.shape, generator=gen) < 0.7)  # a different frame every step
    diff = max_diff(run(lower(net), seq.numpy()), torch_logits(net, seq))
    assert diff < 1e-5, diff
    with pytest.raises(ValueError, match=r"expects input \(B, 1, 8, 8\) or \(B, T=4, 1, 8, 8\)"):
        run(lower(net), np.zeros((2, 64), np.float32))


def test_executor_equals_torch_on_a_vgg8_shaped_network(digits_arrays):
    """Five conv + pool stages down to 1x1, then the FC readout, on digits upsampled to 32x32.

    In float64 on both sides the two agree to round-off (no spike can flip on a rounding
    difference). g_I is set to powers of two so the float32 fold W_EI g_I of the graph is the
    exact product torch forms in float64. In float32 deep networks can flip a spike whose
    membrane lands within ~1e-6 of the threshold (the float32 torch model disagrees with its own
    float64 run the same way), so there the check is on all but such samples.
    """
    net, images = make_net(digits_arrays, VGG8_SHAPED, (3, 32, 32))
    with torch.no_grad():
        for layer in net.modules():
            if hasattr(layer, "gain_i"):
                layer.gain_i.copy_(2.0 ** torch.round(torch.log2(layer.gain_i)))
    x = images[300:364]
    graph = lower(net)
    assert graph.population("features.12.exc").shape == (64, 2, 2)
    logits32 = run(graph, x.numpy())
    ref32 = torch_logits(net, x)
    close = np.abs(logits32 - ref32).max(axis=1) < 1e-5
    assert close.mean() >= 0.9, close.mean()
    with torch.no_grad():
        ref64 = net.double()(x.double()).numpy()
    diff = max_diff(run(graph, x.numpy(), dtype=np.float64), ref64)
    assert diff < 1e-9, diff


def test_circuit_functions_mirror_the_torch_functions_including_an_all_zero_row():
    rng = np.random.default_rng(2)
    i_div = rng.random((3, 5, 4, 2, 2)).astype(np.float32)  # (S, B, C, H, W)
    i_div[i_div < 0.3] = 0.0
    i_div[1, 2] = 0.0  # a (t, b) row without any divisive input
    torch_stab = EF.stabilise_adaptive(torch.from_numpy(i_div.reshape(15, 4, 2, 2))).numpy()
    assert np.array_equal(stabilise(i_div, "adaptive", 0.0).reshape(15, 4, 2, 2), torch_stab)
    i_ee, i_sub = rng.random((2, 3, 5, 4, 2, 2), dtype=np.float32)
    gain_e, bias = rng.random((2, 4, 1, 1), dtype=np.float32)
    i_int = ei_integrate(i_ee, i_sub, i_div, gain_e, bias, "adaptive", 0.0)
    assert np.array_equal(i_int[1, 2], np.broadcast_to(bias, (4, 2, 2)))  # division gives 0
    current = rng.normal(0.5, 1.0, (6, 5, 7)).astype(np.float32)
    params = EF.LIFParameters(tau=3.0, v_threshold=0.8)
    reference = EF.lif_multistep_reference(torch.from_numpy(current), params).numpy()
    assert np.array_equal(lif_multistep(current, 6, 3.0, 0.8), reference)


def test_a_loaded_checkpoint_lowers_to_the_same_graph(digits_arrays, tmp_path):
    net, _ = make_net(digits_arrays, CNN)
    save_checkpoint(tmp_path / "model.pt", net)
    loaded, _ = load_model(tmp_path / "model.pt")
    (doc, arrays), (doc2, arrays2) = lower(net).to_dict(), lower(loaded).to_dict()
    assert doc2 == doc and sorted(arrays2) == sorted(arrays)
    assert all(np.array_equal(arrays2[key], value) for key, value in arrays.items())


# --------------------------------------------------------------------------- explicit synapses
def same_conv_pairs(n: int) -> int:
    """In-bounds (output, input) pixel pairs of a 3-tap, stride-1, pad-1 conv along one axis."""
    return 3 * n - 2 if n > 1 else 1


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 6, 6)], ids=["8x8", "6x6-odd-pools"])
def test_unrolled_graph_gives_the_conv_graph_logits_with_the_expected_synapse_count(
        digits_arrays, shape):
    net, images = make_net(digits_arrays, CNN, shape)
    graph = lower(net)
    sparse = unroll_conv(graph)
    assert {p.op for p in graph.projections} == {"conv", "pointwise", "dense"}
    assert {p.op for p in sparse.projections} == {"sparse"}  # the readout's dense is pooled
    x = images.numpy()
    diff = max_diff(run(sparse, x), run(graph, x))
    assert diff < 1e-5, diff  # (float64 accumulation makes both paths' currents identical)
    nnz = {p.name: len(p.weight) for p in sparse.projections}
    h = shape[1]
    hp, hpp = h // 2, h // 4
    assert nnz["features.0.ee"] == 8 * 1 * same_conv_pairs(h) ** 2
    assert nnz["features.0.ie"] == 2 * 1 * same_conv_pairs(h) ** 2
    assert nnz["features.0.sub"] == nnz["features.0.div"] == 8 * 2 * h * h
    # pool 2 folded in: each pooled pixel is 4 source neurons (odd edges have no synapses)
    assert nnz["features.3.ee"] == 16 * 8 * same_conv_pairs(hp) ** 2 * 4
    assert nnz["features.3.ie"] == 4 * 8 * same_conv_pairs(hp) ** 2 * 4
    assert nnz["classifier.ee"] == 10 * 16 * hpp * hpp * 4
    assert nnz["classifier.sub"] == 10 * 2
    ee = next(p for p in sparse.projections if p.name == "features.3.ee")
    assert ee.indices.shape == (nnz["features.3.ee"], 2) and ee.indices.dtype == np.int64
    assert ee.indices[:, 0].max() < 16 * hp * hp and ee.indices[:, 1].max() < 8 * h * h
    conv = next(p for p in graph.projections if p.name == "features.3.ee")
    assert ee.weight.min() > 0
    # The pool's 1/k^2 on each of the k*k source neurons: weights are the conv taps / 4.
    assert set(np.unique(ee.weight)) <= set(np.unique(conv.weight / np.float32(4)))


def test_unrolling_drops_zero_weights(digits_arrays):
    net, _ = make_net(digits_arrays, CNN)
    graph = lower(net)
    full = {p.name: len(p.weight) for p in unroll_conv(graph).projections}
    conv = next(p for p in graph.projections if p.name == "features.0.ee")
    conv.weight[0, 0, 1, 1] = 0.0  # the centre tap: one synapse per output pixel of channel 0
    fewer = {p.name: len(p.weight) for p in unroll_conv(graph).projections}
    assert full["features.0.ee"] - fewer["features.0.ee"] == 8 * 8
    assert conv.op == "conv"  # the input graph is left as it was


def test_numpy_conv_and_pool_equal_torch_for_strides_paddings_and_odd_sizes():
    rng = np.random.default_rng(0)
    x = rng.random((5, 3, 11, 9), dtype=np.float32)
    for k, stride, padding in [(3, 1, 1), (3, 2, 0), (5, 2, 2), (1, 1, 0), (2, 3, 1)]:
        w = rng.random((4, 3, k, k), dtype=np.float32)
        ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride,
                       padding=padding).numpy()
        assert max_diff(conv2d(x, w, stride, padding), ref) < 1e-6 * np.abs(ref).max()
    for k in (2, 3):
        ref = F.avg_pool2d(torch.from_numpy(x), k).numpy()
        assert max_diff(avg_pool(x, k), ref) < 1e-6


def hand_graph() -> EIGraph:
    """Every op and the pool on a strided conv, a pooled dense, a pooled sparse projection."""
    rng = np.random.default_rng(3)

    def w(*shape: int) -> np.ndarray:
        return rng.random(shape, dtype=np.float32)

    pops = [Population("input", "input", (2, 9, 9)),
            Population("a.inh", "inh", (2, 5, 5), "a", {"response": "identity"}),
            Population("a.exc", "exc", (3, 5, 5), "a", {"tau": 2.0, "v_threshold": 0.5},
                       {"gain_e": w(3), "bias": w(3) - 0.5}),
            Population("b.inh", "inh", (1,), "b", {"response": "identity"}),
            Population("b.readout", "readout", (4,), "b", {"mode": "current"})]
    sparse_idx = np.stack([rng.integers(0, 1, 7), rng.integers(0, 12, 7)], 1)
    projs = [Projection("a.ee", "input", "a.exc", "exc", "conv", w(3, 2, 3, 3),
                        attrs={"stride": 2, "padding": 1}),
             Projection("a.ie", "input", "a.inh", "exc", "conv", w(2, 2, 3, 3),
                        attrs={"stride": 2, "padding": 1}),
             Projection("a.sub", "a.inh", "a.exc", "sub", "pointwise", w(3, 2)),
             Projection("a.div", "a.inh", "a.exc", "div", "pointwise", w(3, 2)),
             Projection("b.ee", "a.exc", "b.readout", "exc", "dense", w(4, 12),
                        attrs={"pool": 2}),
             Projection("b.ie", "a.exc", "b.inh", "exc", "sparse", w(7), sparse_idx,
                        attrs={"pool": 2}),
             Projection("b.sub", "b.inh", "b.readout", "sub", "pointwise", w(4, 1))]
    return EIGraph("hand", 3, pops, projs, {"population": "input", "encoding": "direct"},
                   {"population": "b.readout", "mode": "current", "classes": 4},
                   {"stabilisation": "adaptive", "eps": 0.0})


def test_strided_conv_pooled_dense_and_pooled_sparse_unroll_to_the_same_logits():
    graph = hand_graph()
    x = np.random.default_rng(4).random((16, 2, 9, 9), dtype=np.float32)
    logits, states = run(graph, x, return_states=True, dtype=np.float64)
    assert states["a.exc"]["output"].mean() > 0  # spikes reach the pooled projections
    unrolled = unroll_conv(graph)
    assert max_diff(run(unrolled, x, dtype=np.float64), logits) < 1e-12
    assert max_diff(run(unrolled, x), logits) < 1e-5


# --------------------------------------------------------------------------- files and checks
def test_saved_graph_loads_back_exactly_and_saves_to_identical_bytes(digits_arrays, tmp_path):
    net, images = make_net(digits_arrays, CNN)
    for graph in (lower(net), unroll_conv(lower(net))):
        graph.save(tmp_path / "a")
        graph.save(tmp_path / "b")
        for name in ("graph.json", "weights.npz"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        loaded = EIGraph.load(tmp_path / "a")
        doc, arrays = graph.to_dict()
        doc2, arrays2 = loaded.to_dict()
        assert json.dumps(doc2, sort_keys=True) == json.dumps(doc, sort_keys=True)
        assert doc2 == doc and sorted(arrays2) == sorted(arrays)
        for key, value in arrays.items():
            assert arrays2[key].dtype == value.dtype and np.array_equal(arrays2[key], value), key
        x = images[:64].numpy()
        assert np.array_equal(run(loaded, x), run(graph, x))


def test_validate_lists_negative_weights_and_an_unknown_population_together(digits_arrays):
    net, _ = make_net(digits_arrays, MLP)
    graph = lower(net)
    graph.projections[0].weight[0, 0] = -0.5
    graph.projections.append(Projection("stray", "layers.1.exc", "ghost", "exc", "dense",
                                        np.ones((3, 64), np.float32)))
    with pytest.raises(GraphError) as info:
        graph.validate()
    message = str(info.value)
    assert f"{graph.projections[0].name}: negative weights" in message
    assert "stray: unknown source or target population" in message


def test_executor_names_every_projection_with_a_wrong_shape(digits_arrays):
    net, _ = make_net(digits_arrays, MLP)
    graph = lower(net)
    graph.projections[0].weight = graph.projections[0].weight[:, :10].copy()
    graph.projections[2].weight = graph.projections[2].weight[:3].copy()
    with pytest.raises(GraphError) as info:
        run(graph, np.zeros((1, 1, 8, 8), np.float32))
    assert graph.projections[0].name in str(info.value)
    assert graph.projections[2].name in str(info.value)


def test_settings_records_hold_one_default_per_field_and_name_a_bad_field(tmp_path):
    graph = hand_graph()
    graph.input, graph.readout, graph.division = ({"population": "input"},
                                                  {"population": "b.readout"}, {})
    assert graph.input_settings == InputSettings("input", "direct", 1.0, 0.5, 0)
    assert graph.readout_settings == ReadoutSettings("b.readout", "current", 1.0, None)
    assert graph.division_settings == DivisionSettings("adaptive", 0.0)
    assert graph.division_settings.divisor_floor is None
    graph.division = {"stabilisation": "fixed-eps", "eps": 0.05}
    assert graph.division_settings.divisor_floor == 0.05
    graph.save(tmp_path / "g")  # the dicts are written as they are: no defaults filled in
    saved = json.loads((tmp_path / "g" / "graph.json").read_text())
    assert saved["input"] == {"population": "input"} and saved["readout"] == graph.readout
    for field, record, value in (("division.eps", "division", {"eps": -1.0}),
                                 ("division.stabilisation", "division",
                                  {"stabilisation": "floor"}),
                                 ("readout.theta_out", "readout", {"theta_out": 0}),
                                 ("readout.mode", "readout", {"mode": "rate"}),
                                 ("readout.classes", "readout", {"classes": 2.5}),
                                 ("input.seed", "input", {"seed": -3}),
                                 ("input.threshold", "input", {"threshold": "1"})):
        doc, arrays = graph.to_dict()
        doc[record] = {**doc[record], **value}
        with pytest.raises(GraphError, match=field.replace(".", r"\.")):
            EIGraph.from_dict(doc, arrays, "graph.json")


# --------------------------------------------------------------------------- refusals
def test_lowering_an_uninitialised_network_names_its_layers():
    net = build_network("ei-mlp", in_shape=(1, 8, 8), num_classes=10, T=2, widths=[16])
    with pytest.raises(ValueError, match=r"layers\.1, layers\.3 of EIMLP are not initialised"):
        lower(net)


def test_lowering_a_resnet_names_the_residual_block():
    net = build_network("ei-resnet18", in_shape=(3, 8, 8), num_classes=10, T=1)
    with pytest.raises(ValueError, match=r"module layer1\.0 \(BasicBlock\).*residual"):
        lower(net)


def test_lowering_a_batchnorm_baseline_names_the_bn_unit():
    net = build_network("bn-mlp", in_shape=(1, 8, 8), num_classes=10, T=1, widths=[16])
    with pytest.raises(ValueError, match=r"module layers\.1 \(LinearBN\).*BatchNorm"):
        lower(net)


def test_lowering_refuses_negative_weights_naming_the_parameter(digits_arrays):
    net, _ = make_net(digits_arrays, MLP)
    with torch.no_grad():
        net.layers[3].weight_ie[0, 0] = -1.0
    with pytest.raises(ValueError, match=r"layers\.3\.weight_ie has negative values"):
        lower(net)


def test_graph_holds_every_weight_of_the_model_once_plus_the_folded_divisive_copy(
        digits_arrays):
    net, _ = make_net(digits_arrays, CNN)
    graph = lower(net)
    n_synaptic = sum(p.weight.size for p in graph.projections if p.kind != "div")
    torch_synaptic = sum(m.weight_ee.numel() + m.weight_ie.numel() + m.weight_ei.numel()
                         for m in net.modules() if hasattr(m, "weight_ei"))
    assert n_synaptic == torch_synaptic
    assert graph.neuron_count == 2 * 64 + 8 * 64 + 4 * 16 + 16 * 16 + 2 + 10
    assert math.prod(graph.population("input").shape) == 64
