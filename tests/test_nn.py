"""The training core against the DeepEISNN specification (spec §2-§5), on real digits data."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eideploy.nn import (
    LIF,
    EIConv2d,
    EILinear,
    EIOptions,
    constraint_violations,
    ei_init,
    project_nonnegative_,
)
from eideploy.nn import functional as EF

T = 4


def digits_mlp(options: EIOptions | None = None, depth: int = 8, width: int = 128) -> nn.Sequential:
    """A deep E-I MLP built directly from the core layers (networks are tested elsewhere)."""
    hidden = [EILinear(64 if i == 0 else width, width, options) for i in range(depth)]
    mods: list[nn.Module] = []
    for layer in hidden:
        mods += [layer, LIF(T, options)]
    mods.append(EILinear(width, 10, options, readout=True))
    return nn.Sequential(*mods)


def time_folded(x: torch.Tensor) -> torch.Tensor:
    return x.repeat(T, 1)


def capture_inputs(model: nn.Module) -> dict[nn.Module, torch.Tensor]:
    seen: dict[nn.Module, torch.Tensor] = {}
    for m in model.modules():
        if isinstance(m, EILinear | EIConv2d):
            m.register_forward_pre_hook(lambda mod, args: seen.__setitem__(mod, args[0]))
    return seen


def test_init_balances_excitation_and_subtractive_inhibition(digits_batch):
    model = digits_mlp()
    x = time_folded(digits_batch)
    inputs = capture_inputs(model)
    ei_init(model, x)
    with torch.no_grad():
        model(x)
        hidden = [m for m in model if isinstance(m, EILinear) and not m.readout]
        assert len(hidden) == 8
        for layer in hidden:
            i_ee, i_ie = layer.currents(inputs[layer])
            i_sub = EF.pointwise_inhibition(layer.weight_ei, i_ie)
            i_int = layer(inputs[layer])
            assert abs(float((i_ee - i_sub).mean())) < 0.1 * float(i_ee.std()), layer.layer_name
            assert 0.5 <= float(i_int.std()) <= 2.0, layer.layer_name


def test_init_sets_constant_w_ei_and_gain_from_input_statistics(digits_batch):
    layer = EILinear(64, 40)
    x = time_folded(digits_batch)
    ei_init(nn.Sequential(layer), x)
    assert layer.n_i == 10
    assert torch.all(layer.weight_ei == 0.1)
    m1, m2 = float(x.double().mean()), float((x.double() ** 2).mean())
    v = float(x.double().var(dim=0).mean())
    assert layer.gain_i[0].item() == pytest.approx(math.sqrt(m2 + v) / (8.0 * m1), rel=1e-6)
    beta = math.sqrt(v / (64 * (m2 + v)))
    # Exponential(scale beta): mean beta and std beta; 2560 draws put the mean within ~6%.
    assert float(layer.weight_ee.mean()) == pytest.approx(beta, rel=0.08)
    assert float(layer.weight_ee.std()) == pytest.approx(beta, rel=0.12)
    assert float(layer.weight_ee.min()) >= 0


def test_init_is_deterministic_for_a_seed_and_differs_across_seeds(digits_batch):
    x = time_folded(digits_batch)
    a, b, c = digits_mlp(depth=2), digits_mlp(depth=2), digits_mlp(depth=2)
    ei_init(a, x, seed=7)
    ei_init(b, x, seed=7)
    ei_init(c, x, seed=8)
    for (name, pa), pb, _pc in zip(a.state_dict().items(), b.state_dict().values(),
                                  c.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a[0].weight_ee, c[0].weight_ee)


def test_stabilisation_replaces_zeros_by_row_minimum_and_passes_gradient_unchanged():
    i_div = torch.tensor([[0.0, 2.0, 0.5, 0.0], [3.0, 0.0, 4.0, 1.5], [0.0, 0.0, 0.0, 0.0]],
                         requires_grad=True)
    out = EF.stabilise_adaptive(i_div)
    assert out.tolist()[0] == [0.5, 2.0, 0.5, 0.5]
    assert out.tolist()[1] == [3.0, 1.5, 4.0, 1.5]
    assert all(math.isinf(v) for v in out.tolist()[2])
    g = torch.randn(3, 4)
    out.backward(g)
    assert torch.equal(i_div.grad, g)


def test_the_circuit_from_currents_is_the_shared_weight_circuit_and_stabilise_by_name():
    torch.manual_seed(3)
    i_ee, r_i = torch.rand(6, 5), torch.rand(6, 3)
    w_ei, gain_i, gain_e, bias = torch.rand(5, 3), torch.rand(3), torch.rand(5), torch.rand(5)
    i_sub, i_div = r_i @ w_ei.T, (r_i * gain_i) @ w_ei.T
    i_div[2] = 0.0  # a row without divisive input: +inf divisor, I_int = b_E
    for mode, eps in (("adaptive", 0.0), ("fixed-eps", 0.05)):
        stab = (EF.stabilise_adaptive if mode == "adaptive"
                else lambda d: EF.stabilise_fixed_eps(d, 0.05))
        assert torch.equal(EF.stabilise(i_div, mode, eps), stab(i_div))
        shared = EF.ei_integrate(i_ee, r_i, w_ei, gain_i, gain_e, bias, stab)
        currents = EF.ei_integrate_currents(i_ee, i_sub, i_div, gain_e, bias, stab)
        rows = [0, 1, 3, 4, 5]  # row 2's divisive input was zeroed above, not in ``shared``
        torch.testing.assert_close(currents[rows], shared[rows], rtol=1e-6, atol=1e-6)
    assert torch.equal(EF.ei_integrate_currents(i_ee, i_sub, i_div, None, bias,
                                                EF.stabilise_adaptive)[2], bias)
    torch.testing.assert_close(EF.ei_readout_currents(i_ee, i_sub), EF.ei_readout(i_ee, r_i, w_ei),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="fixed-eps"):
        EF.stabilise(i_div, "epsilon")


def test_w_ei_gradient_is_exactly_one_over_fan_in_of_the_unscaled_one(digits_batch):
    x = time_folded(digits_batch)
    grads = {}
    for scale in ("1/d", "none", "1/sqrt(d)"):
        torch.manual_seed(0)
        model = digits_mlp(EIOptions(wei_grad_scale=scale), depth=2, width=48)
        ei_init(model, x, seed=3)
        model(x).logsumexp(1).mean().backward()
        grads[scale] = [m.weight_ei.grad for m in model if isinstance(m, EILinear)]
    fan_ins = [64, 48, 48]
    for g_scaled, g_plain, g_sqrt, d in zip(grads["1/d"], grads["none"], grads["1/sqrt(d)"],
                                            fan_ins, strict=True):
        assert float(g_plain.abs().max()) > 0
        assert torch.equal(g_scaled, g_plain * (1.0 / d))
        assert torch.equal(g_sqrt, g_plain * (1.0 / math.sqrt(d)))


def test_no_constrained_parameter_is_negative_after_20_large_steps(digits_batch, digits_labels):
    x = time_folded(digits_batch)
    model = digits_mlp(depth=3, width=64)
    ei_init(model, x)
    opt = torch.optim.SGD(model.parameters(), lr=50.0, momentum=0.9)
    negative_before_projection = 0
    for _ in range(20):
        opt.zero_grad()
        logits = model(x).view(T, -1, 10).mean(0)
        torch.nn.functional.cross_entropy(logits, digits_labels).backward()
        opt.step()
        negative_before_projection += len(constraint_violations(model))
        project_nonnegative_(model)
        assert constraint_violations(model) == []
    biases = torch.cat([m.bias for m in model if isinstance(m, EILinear) and not m.readout])
    assert negative_before_projection > 0  # the step really pushed weights below zero
    assert float(biases.min()) < 0  # b_E is left free


def test_kaiming_unconstrained_ablation_keeps_negative_weights(digits_batch):
    model = digits_mlp(EIOptions(init="kaiming-unconstrained"), depth=2, width=32)
    ei_init(model, time_folded(digits_batch))
    assert float(model[0].weight_ee.min()) < 0
    project_nonnegative_(model)
    assert float(model[0].weight_ee.min()) < 0
    clamped = digits_mlp(EIOptions(init="kaiming-clamped"), depth=2, width=32)
    ei_init(clamped, time_folded(digits_batch))
    assert float(clamped[0].weight_ee.min()) == 0.0
    assert float((clamped[0].weight_ee == 0).float().mean()) == pytest.approx(0.5, abs=0.1)


def test_fused_lif_matches_the_step_by_step_reference_in_value_and_gradient():
    torch.manual_seed(0)
    x = (torch.randn(6, 5, 7) * 1.5 + 0.5).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    s = EF.lif_multistep(x)
    s_ref = EF.lif_multistep_reference(x_ref)
    assert torch.equal(s, s_ref)
    assert 0.1 < float(s.mean()) < 0.9
    g = torch.randn_like(s)
    s.backward(g)
    s_ref.backward(g)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-6)


def test_lif_fires_on_threshold_and_soft_resets():
    # h = 0.5*u + I; s = h >= 1; u = h - s. Input 1.0 then 0.6 then 0.6:
    # t0: h=1.0 -> spike, u=0; t1: h=0.6 -> no, u=0.6; t2: h=0.9 -> no.
    s = EF.lif_multistep(torch.tensor([[1.0], [0.6], [0.6], [0.8]]))
    assert s.flatten().tolist() == [1.0, 0.0, 0.0, 1.0]


def test_floor_interneurons_count_spikes_with_straight_through_gradient():
    i_ie = torch.tensor([-0.5, 0.4, 1.0, 2.7], requires_grad=True)
    r = EF.inhibitory_response(i_ie, "floor", theta_i=1.0)
    assert r.tolist() == [0.0, 0.0, 1.0, 2.0]
    r.sum().backward()
    assert i_ie.grad.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert EF.inhibitory_response(i_ie, "identity") is i_ie


def test_conv_and_linear_layers_share_the_circuit():
    """A 1x1 conv on a 1x1 image computes exactly what a linear layer computes."""
    torch.manual_seed(0)
    lin, conv = EILinear(12, 8), EIConv2d(12, 8, kernel_size=1)
    x = torch.rand(32, 12)
    ei_init(nn.Sequential(lin), x, seed=1)
    ei_init(nn.Sequential(conv), x[:, :, None, None], seed=1)
    with torch.no_grad():
        conv.weight_ee.copy_(lin.weight_ee[:, :, None, None])
        conv.weight_ie.copy_(lin.weight_ie[:, :, None, None])
        assert torch.allclose(conv(x[:, :, None, None])[:, :, 0, 0], lin(x), atol=1e-6)


def test_initialised_flag_travels_with_the_state_dict(digits_batch):
    x = time_folded(digits_batch)
    a = digits_mlp(depth=2, width=32)
    ei_init(a, x)
    b = digits_mlp(depth=2, width=32)
    with pytest.raises(RuntimeError, match="ei_init"):
        b(x)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert all(bool(m.initialised) for m in b if isinstance(m, EILinear))


# --------------------------------------------------------------------------- bad input
def test_wrong_input_shape_names_the_layer(digits_batch):
    model = digits_mlp(depth=2, width=32)
    ei_init(model, time_folded(digits_batch))
    with pytest.raises(ValueError,
                       match=r"layer 0 \(EILinear\) expects input of shape \(T\*B, 64\)"):
        model(torch.rand(8, 65))


def test_time_steps_below_one_are_refused():
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        LIF(0)


def test_ei_init_refuses_nan_batch_naming_the_layer(digits_batch):
    x = time_folded(digits_batch).clone()
    x[3, 5] = float("nan")
    with pytest.raises(ValueError, match="layer 0 contains NaN"):
        ei_init(digits_mlp(depth=2, width=32), x)


def test_ei_init_refuses_negative_inputs_naming_the_layer(digits_batch):
    x = time_folded(digits_batch) - 0.5  # what mean/std normalisation would do
    with pytest.raises(ValueError, match="layer 0 has negative values"):
        ei_init(digits_mlp(depth=2, width=32), x)


def test_unknown_option_values_are_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match="adaptive, fixed-eps"):
        EIOptions(stabilisation="epsilon")
    with pytest.raises(ValueError, match="unknown E-I option"):
        EIOptions.from_dict({"stabilization": "adaptive"})
