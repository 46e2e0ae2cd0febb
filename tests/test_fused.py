"""The fused E-I circuit against its op-by-op reference (spec §3, §5.1, §5.2), in float64.

The layers train through ``ei_integrate_fused`` / ``ei_readout_fused``, whose backward pass is
derived by hand; the reference is ``currents -> inhibitory_response -> ei_integrate`` (or
``ei_readout``) differentiated by autograd. Both must agree in value and in the gradient of every
input and parameter to round-off, on the cases where the circuit is delicate: exact zeros in the
divisor, a sample whose divisor row is all zero, the floor interneurons and the 1/d scaling of
the W_EI gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eideploy.nn import LIF, EIConv2d, EILinear, EIOptions, ei_init
from eideploy.nn import _kernels
from eideploy.nn import functional as EF

TOL = {"rtol": 1e-10, "atol": 1e-12}
SHIPPED_MIN_ELEMENTS = _kernels.MIN_ELEMENTS  # before the fixture below patches it


@pytest.fixture(autouse=True, params=["torch", "compiled"])
def elementwise(request, monkeypatch) -> str:
    """Every test here runs twice: with the E-I circuit's element-wise work as torch operations
    and as the compiled CPU pass (``nn._kernels``), which the small test tensors would otherwise
    never reach."""
    monkeypatch.setattr(_kernels, "MIN_ELEMENTS", 0 if request.param == "compiled" else 1 << 62)
    return request.param
N_E, N_I = 8, 3
ZERO_SAMPLE = 1  # its input is all zero, so its divisor row is all zero (Stab leaves +inf)
SILENT_E = 2  # this excitatory channel gets no inhibition (zero row of W_EI): I_div = 0


@dataclass
class Circuit:
    x: torch.Tensor
    w_ee: torch.Tensor
    w_ie: torch.Tensor
    w_ei: torch.Tensor
    gain_i: torch.Tensor
    gain_e: torch.Tensor
    bias: torch.Tensor
    project: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    fan_in: int

    def leaves(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "W_EE": self.w_ee, "W_IE": self.w_ie, "W_EI": self.w_ei,
                "g_I": self.gain_i, "g_E": self.gain_e, "b_E": self.bias}

    def projection(self) -> torch.Tensor:
        return self.project(self.x, torch.cat([self.w_ee, self.w_ie]))

    def scaled_w_ei(self) -> torch.Tensor:
        return EF.scale_grad(self.w_ei, 1.0 / self.fan_in)  # E-I Prop §5.2


def make_circuit(kind: str, seed: int = 0) -> Circuit:
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    if kind == "linear":
        d = 20
        x, kernel = rand(12, d), (d,)

        def project(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return F.linear(x, w)
    else:
        # "conv": 30 positions per map, the point-wise W_EI product as a 1x1 conv; "conv-wide":
        # 48 positions, as batched matmuls (EF.MATMUL_MIN_POSITIONS)
        x, kernel = rand(6, 3, *((6, 5) if kind == "conv" else (8, 6))), (3, 3, 3)
        d = 27
        x[3, :, :3] = 0  # output rows 0-1 of sample 3 see only zeros: zero divisors mid-row

        def project(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x, w, padding=1)
    x[ZERO_SAMPLE] = 0
    w_ei = rand(N_E, N_I)
    w_ei[SILENT_E] = 0
    leaves = [x, 0.3 * rand(N_E, *kernel), 0.3 * rand(N_I, *kernel), w_ei,
              rand(N_I) + 0.5, rand(N_E) + 0.5, rand(N_E) - 0.5]
    return Circuit(*(t.requires_grad_() for t in leaves), project=project, fan_in=d)


def stabiliser(mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if mode == "adaptive":
        return EF.stabilise_adaptive
    return lambda i_div: EF.stabilise_fixed_eps(i_div, 1e-3)


def reference_integrate(c: Circuit, stabilisation: str, inhibitory: str) -> torch.Tensor:
    both = c.projection()
    i_ee, i_ie = both[:, :N_E], both[:, N_E:]
    r_i = EF.inhibitory_response(i_ie, inhibitory, 1.0)
    return EF.ei_integrate(i_ee, r_i, c.scaled_w_ei(), c.gain_i, c.gain_e, c.bias,
                           stabiliser(stabilisation))


def fused_integrate(c: Circuit, stabilisation: str, inhibitory: str) -> torch.Tensor:
    return EF.ei_integrate_fused(c.projection(), c.scaled_w_ei(), c.gain_i, c.gain_e, c.bias,
                                 stabilisation, 1e-3, inhibitory, 1.0)


Grads = dict[str, torch.Tensor]


def value_and_grads(out: torch.Tensor, c: Circuit,
                    upstream: torch.Tensor) -> tuple[torch.Tensor, Grads]:
    wanted = {name: t for name, t in c.leaves().items() if t.requires_grad}
    grads = torch.autograd.grad(out, list(wanted.values()), upstream)
    return out.detach(), dict(zip(wanted, grads, strict=True))


def assert_same(fused: tuple[torch.Tensor, Grads], reference: tuple[torch.Tensor, Grads]) -> None:
    (out_f, grads_f), (out_r, grads_r) = fused, reference
    torch.testing.assert_close(out_f, out_r, **TOL)
    assert grads_f.keys() == grads_r.keys()
    for name, g_r in grads_r.items():
        assert bool(torch.isfinite(grads_f[name]).all()), name
        torch.testing.assert_close(grads_f[name], g_r, **TOL,
                                   msg=lambda m, n=name: f"d/d{n}: {m}")


@pytest.mark.parametrize("inhibitory", ["identity", "floor"])
@pytest.mark.parametrize("stabilisation", ["adaptive", "fixed-eps"])
@pytest.mark.parametrize("kind", ["linear", "conv", "conv-wide"])
def test_fused_integration_equals_the_reference_in_value_and_every_gradient(
        kind: str, stabilisation: str, inhibitory: str):
    c = make_circuit(kind)
    with torch.no_grad():
        r_i = EF.inhibitory_response(c.projection()[:, N_E:], inhibitory, 1.0)
        i_div = EF.pointwise_inhibition(c.w_ei, r_i * EF.channel_view(c.gain_i, r_i.dim()))
    rows = i_div.flatten(1)
    # The delicate cases are really there: zeros in rows that also hold positive divisors,
    # and one row that is all zero.
    assert bool(((rows == 0).any(1) & (rows > 0).any(1)).any())
    assert bool((rows[ZERO_SAMPLE] == 0).all())
    upstream = torch.randn(reference_integrate(c, stabilisation, inhibitory).shape,
                           generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference = value_and_grads(reference_integrate(c, stabilisation, inhibitory), c, upstream)
    fused = value_and_grads(fused_integrate(c, stabilisation, inhibitory), c, upstream)
    assert_same(fused, reference)
    assert float(reference[1]["W_EI"].abs().max()) > 0  # W_EI does get a gradient


@pytest.mark.parametrize("inhibitory", ["identity", "floor"])
@pytest.mark.parametrize("kind", ["linear", "conv", "conv-wide"])
def test_fused_readout_equals_the_reference_in_value_and_every_gradient(kind: str,
                                                                        inhibitory: str):
    c = make_circuit(kind, seed=3)
    for unused in (c.gain_i, c.gain_e, c.bias):  # the readout has no division, gains or bias
        unused.requires_grad_(False)
    both = c.projection()
    r_i = EF.inhibitory_response(both[:, N_E:], inhibitory, 1.0)
    ref_out = EF.ei_readout(both[:, :N_E], r_i, c.scaled_w_ei())
    upstream = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(2),
                           dtype=torch.float64)
    reference = value_and_grads(ref_out, c, upstream)
    fused_out = EF.ei_readout_fused(c.projection(), c.scaled_w_ei(), inhibitory, 1.0)
    assert_same(value_and_grads(fused_out, c, upstream), reference)


def test_all_zero_divisor_row_gives_the_bias_and_no_gradient_through_the_division():
    c = make_circuit("conv")
    out = fused_integrate(c, "adaptive", "identity")
    bias = c.bias.detach()[:, None, None].expand_as(out[ZERO_SAMPLE])
    assert torch.equal(out[ZERO_SAMPLE].detach(), bias)
    grad_x, grad_gain_e = torch.autograd.grad(out[ZERO_SAMPLE].sum(), [c.x, c.gain_e])
    assert not bool(grad_x.any()) and not bool(grad_gain_e.any())


def test_w_ei_gradient_of_the_fused_path_is_one_over_fan_in_of_the_unscaled_one():
    c = make_circuit("linear")
    out = fused_integrate(c, "adaptive", "identity")
    (scaled,) = torch.autograd.grad(out.sum(), [c.w_ei])
    out = EF.ei_integrate_fused(c.projection(), c.w_ei, c.gain_i, c.gain_e, c.bias)
    (plain,) = torch.autograd.grad(out.sum(), [c.w_ei])
    assert float(plain.abs().max()) > 0
    torch.testing.assert_close(scaled, plain / c.fan_in, rtol=1e-15, atol=0)


def test_fused_path_computes_only_the_gradients_that_are_asked_for():
    c = make_circuit("conv")
    for frozen in (c.gain_i, c.gain_e, c.bias, c.w_ei):
        frozen.requires_grad_(False)
    upstream = torch.full((6, N_E, 6, 5), 1 / 7, dtype=torch.float64)
    reference = value_and_grads(reference_integrate(c, "adaptive", "floor"), c, upstream)
    fused = value_and_grads(fused_integrate(c, "adaptive", "floor"), c, upstream)
    assert_same(fused, reference)


# --------------------------------------------------------------------------- the layers
def layer_and_input(kind: str, options: EIOptions) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if kind == "linear":
        layer, x = EILinear(24, 16, options), torch.rand(32, 24)
    else:
        layer, x = EIConv2d(4, 16, 3, stride=2, options=options), torch.rand(8, 4, 9, 9)
    ei_init(nn.Sequential(layer), x, seed=5)
    return layer.double(), x.double()


@pytest.mark.parametrize("options", [EIOptions(), EIOptions(stabilisation="fixed-eps",
                                                            inhibitory="floor", theta_i=0.05)])
@pytest.mark.parametrize("kind", ["linear", "conv", "conv-wide"])
def test_layers_train_through_the_fused_circuit_with_the_reference_gradients(
        kind: str, options: EIOptions):
    layer, x = layer_and_input(kind, options)
    params = [layer.weight_ee, layer.weight_ie, layer.weight_ei, layer.gain_i, layer.gain_e,
              layer.bias]
    out = layer(x)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, params, upstream)
    i_ee, i_ie = layer.currents(x)
    r_i = EF.inhibitory_response(i_ie, options.inhibitory, options.theta_i)
    stab = (EF.stabilise_adaptive if options.stabilisation == "adaptive"
            else lambda d: EF.stabilise_fixed_eps(d, options.eps))
    w_ei = EF.scale_grad(layer.weight_ei, options.grad_scale(layer.fan_in))
    ref = EF.ei_integrate(i_ee, r_i, w_ei, layer.gain_i, layer.gain_e, layer.bias, stab)
    torch.testing.assert_close(out, ref, **TOL)
    for p, g, g_ref in zip(params, grads, torch.autograd.grad(ref, params, upstream),
                           strict=True):
        torch.testing.assert_close(g, g_ref, **TOL)
        assert p.shape == g.shape


def autograd_nodes(out: torch.Tensor) -> list[str]:
    seen, stack, names = set(), [out.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack.extend(fn for fn, _ in node.next_functions)
    return names


@pytest.mark.parametrize("readout", [False, True])
def test_layer_hands_its_projection_one_gradient_without_slicing(readout: bool):
    layer = EILinear(24, 16, readout=readout)
    x = torch.rand(32, 24)
    ei_init(nn.Sequential(layer), x)
    out = layer(x)
    names = autograd_nodes(out)
    assert "Slice" not in " ".join(names), names
    # Straight from the fused node to the projection: [I_EE | I_IE] has one gradient tensor.
    fused, projection = out.grad_fn, out.grad_fn.next_functions[0][0]
    assert type(fused).__name__ == ("_EIReadoutBackward" if readout else "_EIIntegrateBackward")
    assert type(projection).__name__ in ("MmBackward0", "AddmmBackward0", "LinearBackward0")


def test_fused_circuit_under_bfloat16_autocast_runs_in_float32_after_the_projection():
    layer, x = layer_and_input("conv", EIOptions())
    layer, x = layer.float(), x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        both = layer.project(x, torch.cat([layer.weight_ee, layer.weight_ie]))
        out = EF.ei_integrate_fused(both, layer.weight_ei, layer.gain_i, layer.gain_e,
                                    layer.bias)
    assert both.dtype == torch.bfloat16 and out.dtype == torch.float32
    plain = EF.ei_integrate_fused(both.float(), layer.weight_ei, layer.gain_i, layer.gain_e,
                                  layer.bias)
    assert torch.equal(out, plain)
    out.sum().backward()
    assert bool(torch.isfinite(layer.weight_ei.grad).all())


def test_fused_lif_matches_the_reference_to_round_off_in_float64():
    torch.manual_seed(0)
    x = (torch.randn(5, 7, 3, 4, dtype=torch.float64) * 1.5 + 0.6).requires_grad_()
    s = LIF(5)(x.view(35, 3, 4))
    s_ref = EF.lif_multistep_reference(x).view(35, 3, 4)
    assert torch.equal(s, s_ref)
    g = torch.randn_like(s)
    (grad,) = torch.autograd.grad(s, x, g)
    (grad_ref,) = torch.autograd.grad(s_ref, x, g)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-14)


def test_a_second_backward_through_the_fused_node_fails_loudly():
    """The backward pass builds its gradient in the saved buffer: a retained graph cannot be
    replayed silently with clobbered values; autograd's version check refuses it."""
    c = make_circuit("linear")
    out = fused_integrate(c, "adaptive", "identity").sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


@pytest.mark.parametrize("readout", [False, True])
def test_fused_circuit_traces_into_one_torch_compile_graph(readout: bool):
    c = make_circuit("conv")
    args = (c.w_ei,) if readout else (c.w_ei, c.gain_i, c.gain_e, c.bias, "adaptive")
    fn = EF.ei_readout_fused if readout else EF.ei_integrate_fused
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")  # fails on a graph break
    both = c.projection()
    (grad,) = torch.autograd.grad(compiled(both, *args).sum(), [c.x])
    (grad_eager,) = torch.autograd.grad(fn(c.projection(), *args).sum(), [c.x])
    torch.testing.assert_close(grad, grad_eager, **TOL)


@pytest.mark.parametrize(("size", "stride", "padding"),
                         [(2, 1, 1), (4, 2, 1), (3, 1, 0), (4, 1, 1), (5, 1, 1)])
def test_projection_conv_equals_torch_conv_in_value_and_both_gradients(size: int, stride: int,
                                                                       padding: int):
    """``EF.conv2d``: on maps of at most EF.UNFOLD_MAX_POSITIONS outputs the weight gradient is
    one GEMM over unfolded inputs; values and gradients are F.conv2d's to round-off."""
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(5, 6, size, size, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.rand(7, 6, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    out = EF.conv2d(x, w, stride, padding)
    ref = F.conv2d(x, w, stride=stride, padding=padding)
    upstream = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(out, ref, **TOL)
    for got, want in zip(torch.autograd.grad(out, (x, w), upstream),
                         torch.autograd.grad(ref, (x, w), upstream), strict=True):
        assert float(want.abs().max()) > 0
        torch.testing.assert_close(got, want, **TOL)
    assert (out.grad_fn.name() == "_SmallMapConv2dBackward") == (
        out.shape[2] * out.shape[3] <= EF.UNFOLD_MAX_POSITIONS)


@pytest.mark.parametrize("positions", [(16, 16), (4, 4)])  # the matmul and the 1x1 conv path
def test_compiled_elementwise_pass_runs_and_agrees_with_the_torch_operations_in_float32(
        positions: tuple[int, int], monkeypatch):
    """A VGG-sized float32 layer (above ``_kernels.MIN_ELEMENTS``, so the default takes the
    compiled pass), with an exact zero in a divisor row, through both paths: the same values
    and gradients to float32 round-off, and the compiled pass really ran."""
    gen = torch.Generator().manual_seed(4)
    n_e, n_i = 64, 16
    both0 = torch.rand(32, n_e + n_i, *positions, generator=gen)
    both0[3, n_e:, 0, 0] = 0  # r_I = 0 at one position of sample 3: I_div = 0 there
    both0[5, n_e:] = 0  # all of sample 5: its divisor row is all zero
    params = [torch.rand(n_e, n_i, generator=gen) / n_i, torch.rand(n_i, generator=gen) + 0.5,
              torch.rand(n_e, generator=gen) + 0.5, torch.rand(n_e, generator=gen) - 0.5]
    upstream = torch.randn(32, n_e, *positions, generator=gen)
    calls = []
    for name in ("integrate_forward", "integrate_backward"):
        real = getattr(_kernels, name)
        monkeypatch.setattr(_kernels, name,
                            lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    results = {}
    assert 32 * 2 * n_e * positions[0] * positions[1] >= SHIPPED_MIN_ELEMENTS
    for path, threshold in (("torch", 1 << 62), ("compiled", SHIPPED_MIN_ELEMENTS)):
        monkeypatch.setattr(_kernels, "MIN_ELEMENTS", threshold)
        leaves = [both0.clone().requires_grad_()] + [p.clone().requires_grad_() for p in params]
        out = EF.ei_integrate_fused(*leaves)
        results[path] = (out.detach(), torch.autograd.grad(out, leaves, upstream))
    assert calls == ["integrate_forward", "integrate_backward"]
    (out_t, grads_t), (out_c, grads_c) = results["torch"], results["compiled"]
    assert bool(torch.isfinite(out_c).all()) and float(out_t.std()) > 0
    torch.testing.assert_close(out_c, out_t, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads_c, grads_t, strict=True):
        scale = float(want.abs().max())  # sums of 8192 signed terms: round-off of the largest
        assert scale > 0
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * scale)


def test_compiled_pass_leaves_torch_thread_count_as_it_was():
    """numba's OpenMP pool shares libgomp with torch; launching it must not widen torch's
    intra-op threads (a one-thread training step ran its convolutions on every core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mixed = torch.rand(4, 2 * N_E, 16) + 0.1
        out = _kernels.integrate_forward(torch.rand(4, N_E + N_I, 16), mixed, torch.rand(N_E),
                                         torch.rand(N_E), 0.0)
        assert bool(torch.isfinite(out).all())
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
