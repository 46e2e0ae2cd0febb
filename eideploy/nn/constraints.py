"""Projected SGD for Dale's law (spec §5.3): constrained parameters back to >= 0 after each step."""

from __future__ import annotations

import torch
from torch import nn

from .layers import EILayer

__all__ = ["project_nonnegative_", "constraint_violations"]


@torch.no_grad()
def project_nonnegative_(model: nn.Module) -> None:
    """Clamp W_EE, W_IE, W_EI, g_I and g_E of every E-I layer to >= 0 (b_E stays free).

    Layers built with ``init='kaiming-unconstrained'`` are left alone: that ablation drops the sign
    constraint altogether. Momentum buffers are not touched, as in the reference.
    """
    for layer in model.modules():
        if isinstance(layer, EILayer) and layer.options.nonnegative:
            for p in layer.constrained_parameters():
                p.clamp_(min=0.0)


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
