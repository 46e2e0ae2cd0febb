"""Streaming (eideploy.nn.streaming): one time step at a time with explicit state equals the
multi-step call, for the LIF, an E-I layer and whole VGG / MLP networks."""

from __future__ import annotations

import pytest
import torch

from eideploy.networks import build_network
from eideploy.nn import LIF, EIOptions
from eideploy.nn.functional import LIFParameters, lif_multistep
from eideploy.nn.init import ei_init
from eideploy.nn.streaming import lif_step, step_modules

T = 6


def test_lif_stepped_equals_the_multistep_lif_in_spikes_and_membrane():
    torch.manual_seed(0)
    current = torch.rand(T, 5, 7) * 1.5
    p = LIFParameters(tau=2.0, v_threshold=1.0)
    expected = lif_multistep(current, p)
    u, decay = None, 1.0 - 1.0 / p.tau
    reference_u = torch.zeros(5, 7)
    for t in range(T):
        spikes, u = lif_step(current[t], u, p)
        assert torch.equal(spikes, expected[t])
        reference_u = decay * reference_u + current[t] - p.v_threshold * expected[t]
        assert torch.allclose(u, reference_u, atol=1e-6)
    assert expected.sum() > 0 and expected.mean() < 1


def test_lif_module_stepped_equals_its_folded_call():
    torch.manual_seed(1)
    lif = LIF(T, EIOptions(tau=3.0))
    x = torch.rand(T * 4, 9) * 2
    folded = lif(x).view(T, 4, 9)
    out, state = step_modules([lif], x.view(T, 4, 9)[0])
    steps = [out]
    for t in range(1, T):
        out, state = step_modules([lif], x.view(T, 4, 9)[t], state)
        steps.append(out)
    assert torch.equal(torch.stack(steps), folded)


@pytest.mark.parametrize("arch,kwargs,in_shape", [
    ("ei-mlp", {"widths": [40, 24]}, (1, 8, 8)),
    ("ei-cnn", {"layers": [8, "P", 16, "P"]}, (2, 12, 12)),
])
@pytest.mark.parametrize("static", [False, True])
def test_a_network_stepped_equals_its_multistep_forward(arch, kwargs, in_shape, static):
    torch.manual_seed(2)
    net = build_network(arch, in_shape=in_shape, num_classes=5, T=T, **kwargs)
    ei_init(net, torch.rand(16, *in_shape))
    net.eval()
    # a sequence (a different input at every step) or a static image (the same at every step)
    x = torch.rand(3, *in_shape) if static else torch.rand(3, T, *in_shape)
    with torch.no_grad():
        expected = net.forward_sequence(x)  # (T, B, classes)
        state, outputs = None, []
        for t in range(T):
            o_t, state = step_modules(net.pipeline(), x if static else x[:, t], state)
            outputs.append(o_t)
    streamed = torch.stack(outputs)
    assert expected.abs().max() > 0
    assert torch.allclose(streamed, expected, atol=1e-6, rtol=0)
    # the logits are the time average either way
    assert torch.allclose(streamed.mean(0), net(x), atol=1e-6, rtol=0)


def test_a_module_with_a_lif_inside_or_a_wrong_state_is_refused():
    lif = LIF(T)
    with pytest.raises(ValueError, match="holds a LIF inside"):
        step_modules([torch.nn.Sequential(lif)], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="2 membranes for 1 LIF"):
        step_modules([lif], torch.zeros(2, 3), [None, None])
