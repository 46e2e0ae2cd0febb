"""Fully connected spiking networks: the E-I MLP and its BN-SNN baseline.

The reference keeps an (unused) MLP path; here it is the smallest network that exercises the whole
method end to end, which is what the tests and the tiny deployment targets need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..nn import EILinear, EIOptions
from .base import SpikingNetwork, as_options
from .baseline import LinearBN

__all__ = ["EIMLP", "BNMLP"]


def _check_widths(owner: str, widths: Sequence[int]) -> list[int]:
    try:
        out = [int(w) for w in widths]
    except TypeError:
        raise ValueError(f"{owner}: widths must be a sequence of layer sizes, "
                         f"got {widths!r}") from None
    if any(w < 1 for w in out):
        raise ValueError(f"{owner}: every hidden width must be >= 1, got {out}")
    return out


class EIMLP(SpikingNetwork):
    """Flatten -> [EILinear -> LIF] per hidden width -> EILinear readout (``I_EE - I_sub``)."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, widths: Sequence[int], T: int,
                 options: EIOptions | dict[str, Any] | None = None) -> None:
        super().__init__(in_shape, num_classes, T)
        self.options = as_options(options)
        widths = _check_widths(type(self).__name__, widths)
        mods: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(self.in_shape)
        for width in widths:
            mods += [EILinear(fan_in, width, self.options), self.lif()]
            fan_in = width
        mods.append(EILinear(fan_in, num_classes, self.options, readout=True))
        self.layers = nn.Sequential(*mods)
        self._finish("ei-mlp", widths=widths)

    def pipeline(self) -> list[nn.Module]:
        return list(self.layers)


class BNMLP(SpikingNetwork):
    """BN-SNN baseline: Flatten -> [Linear(no bias) -> BN1d -> LIF] per width -> biased Linear."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, widths: Sequence[int],
                 T: int) -> None:
        super().__init__(in_shape, num_classes, T)
        widths = _check_widths(type(self).__name__, widths)
        mods: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(self.in_shape)
        for width in widths:
            mods += [LinearBN(fan_in, width), self.lif()]
            fan_in = width
        mods.append(nn.Linear(fan_in, num_classes, bias=True))
        self.layers = nn.Sequential(*mods)
        self.share_static_stem = False  # BatchNorm mixes rows (see SpikingNetwork)
        self._finish("bn-mlp", widths=widths)

    def pipeline(self) -> list[nn.Module]:
        return list(self.layers)
