"""Projected SGD for Dale's law (spec §5.3): constrained parameters back to >= 0 after each step."""

from __future__ import annotations

import torch
from torch import nn

from .layers import EILayer

__all__ = ["project_nonnegative_", "constraint_violations", "tie_per_core_"]


@torch.no_grad()
def project_nonnegative_(model: nn.Module) -> None:
    """Clamp W_EE, W_IE, W_EI, g_I and g_E of every E-I layer to >= 0 (b_E stays free).

    Layers built with ``init='kaiming-unconstrained'`` are left alone: that ablation drops the sign
    constraint altogether. Momentum buffers are not touched, as in the reference. The same
    projection keeps the hardware constraints of a layer: absent synapses (its connectivity
    masks) at 0, and b_E tied per core (``bias='per_core'``: each chunk of ``bias_group``
    neurons takes its mean, the projection onto tied biases) or at 0 (``bias='none'``).
    """
    layers = [m for m in model.modules() if isinstance(m, EILayer)]
    params = [p for layer in layers if layer.options.nonnegative
              for p in layer.constrained_parameters()]
    if params:
        torch._foreach_clamp_min_(params, 0.0)  # one batched launch, not one per tensor
    for layer in layers:
        if layer.masked:
            layer.weight_ee.mul_(layer.mask_ee)
            layer.weight_ie.mul_(layer.mask_ie)
            layer.weight_ei.mul_(layer.mask_ei)
        if layer.readout:
            continue
        if layer.options.bias == "none":
            layer.bias.zero_()
        elif layer.options.bias == "per_core":
            tie_per_core_(layer)


def tie_per_core_(layer: EILayer) -> None:
    """Each chunk of ``bias_group`` consecutive E neurons (one core) takes the chunk's mean b_E.

    Dense layers only: a conv layer's bias is per channel, and its neurons (channel-major) do not
    fall into cores channel by channel.
    """
    if layer.weight_ee.dim() != 2:
        raise ValueError(f"layer {layer.layer_name}: bias='per_core' is for dense E-I layers; "
                         "use bias='none' for convolutions")
    group = layer.options.bias_group
    for start in range(0, layer.n_e, group):
        chunk = layer.bias[start:start + group]
        chunk.fill_(chunk.mean())  # a 0-dim tensor: no device-to-host read per chunk


def constraint_violations(model: nn.Module) -> list[str]:
    """Names of constrained parameters holding negative (or non-finite) values."""
    bad = []
    for name, layer in model.named_modules():
        if isinstance(layer, EILayer) and layer.options.nonnegative:
            for pname in ("weight_ee", "weight_ie", "weight_ei", "gain_i", "gain_e"):
                p = getattr(layer, pname).detach()
                if not bool(torch.isfinite(p).all()) or float(p.min()) < 0:
                    bad.append(f"{name}.{pname}")
    return bad
