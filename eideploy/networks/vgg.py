"""VGG with the "light classifier" (spec §6): conv3x3 blocks, average pools, one FC readout.

Every conv entry is a 3x3, stride 1, pad 1 unit followed by LIF (the reference's Dropout(p=0) is
the identity and is left out); ``P`` is AvgPool2d(2, 2). The pools floor odd sizes, so a 48x48 DVS
input goes 48->24->12->6->3->1 and the last pool keeps only the top-left 2x2 window of the 3x3 map
(spec §6 [diff]): the flatten size is computed from ``in_shape`` rather than assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..nn import EIConv2d, EILinear, EIOptions
from .base import SpikingNetwork, as_options
from .baseline import ConvBN

__all__ = ["EIVGG", "BNVGG", "EICNN", "BNCNN", "VGG_CONFIGS", "vgg_flat_features",
           "parse_layers"]

P = "P"
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    8: (64, P, 128, P, 256, P, 512, P, 512, P),
    11: (64, P, 128, P, 256, 256, P, 512, 512, P, 512, 512, P),
    16: (64, 64, P, 128, 128, P, 256, 256, 256, P, 512, 512, 512, P, 512, 512, 512, P),
    19: (64, 64, P, 128, 128, P, 256, 256, 256, 256, P, 512, 512, 512, 512, P,
         512, 512, 512, 512, P),
}


def parse_layers(layers: Sequence[int | str], owner: str) -> tuple[int | str, ...]:
    """Check a VGG-style layer plan: conv widths (positive ints) and ``"P"`` for a pool."""
    plan = tuple(layers)
    if not plan or not any(e != P for e in plan):
        raise ValueError(f"{owner}: layers needs at least one conv width, got {list(plan)}")
    for entry in plan:
        if entry != P and not (isinstance(entry, int) and entry > 0):
            raise ValueError(f"{owner}: layers entries are positive conv widths or 'P' (pool), "
                             f"got {entry!r}")
    return plan


def vgg_flat_features(depth: int | Sequence[int | str], in_shape: Sequence[int],
                      owner: str = "VGG") -> int:
    """Size of the flattened feature map: last conv width x the spatial size after the pools.

    ``depth`` is a VGG depth (8, 11, 16, 19) or a layer plan such as ``[32, "P", 64, "P"]``.
    """
    if isinstance(depth, int):
        if depth not in VGG_CONFIGS:
            raise ValueError(f"{owner}: depth must be one of {sorted(VGG_CONFIGS)}, got {depth!r}")
        plan = VGG_CONFIGS[depth]
    else:
        plan = parse_layers(depth, owner)
    if len(in_shape) != 3:
        raise ValueError(f"{owner}: in_shape must be (C, H, W), got {tuple(in_shape)}")
    _, h, w = in_shape
    channels = 0
    for entry in plan:
        if entry == P:
            h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"{owner}: input {tuple(in_shape)} is too small for VGG-{depth}: "
                                 "its pools shrink the feature map to nothing")
        else:
            channels = int(entry)
    return channels * h * w


class _VGG(SpikingNetwork):
    """The layer plan, shared by the E-I network and the BN-SNN baseline."""

    def _build(self, depth: int | Sequence[int | str], conv_unit: Callable[[int, int], nn.Module],
               head: Callable[[int], nn.Module]) -> None:
        flat = vgg_flat_features(depth, self.in_shape, type(self).__name__)
        plan = VGG_CONFIGS[depth] if isinstance(depth, int) else tuple(depth)
        mods: list[nn.Module] = []
        channels = self.in_shape[0]
        for entry in plan:
            if entry == P:
                mods.append(nn.AvgPool2d(2, 2))
            else:
                mods += [conv_unit(channels, int(entry)), self.lif()]
                channels = int(entry)
        self.depth = depth
        self.features = nn.Sequential(*mods)
        self.flatten = nn.Flatten()
        self.classifier = head(flat)

    def pipeline(self) -> list[nn.Module]:
        return [*self.features, self.flatten, self.classifier]


class EIVGG(_VGG):
    """E-I VGG-8/11/16/19: EIConv2d -> LIF per conv, then an EILinear readout (512 -> classes)."""

    def __init__(self, depth: int, in_shape: Sequence[int], num_classes: int, T: int,
                 options: EIOptions | dict[str, Any] | None = None) -> None:
        super().__init__(in_shape, num_classes, T)
        self.options = opts = as_options(options)
        self._build(depth,
                    lambda c_in, c_out: EIConv2d(c_in, c_out, 3, 1, 1, options=opts),
                    lambda flat: EILinear(flat, num_classes, opts, readout=True))
        self._finish(f"ei-vgg{depth}", depth=depth)


class BNVGG(_VGG):
    """BN-SNN baseline VGG: Conv2d(no bias) -> BN2d -> LIF per conv, biased Linear head."""

    def __init__(self, depth: int, in_shape: Sequence[int], num_classes: int, T: int) -> None:
        super().__init__(in_shape, num_classes, T)
        self._build(depth, lambda c_in, c_out: ConvBN(c_in, c_out, 3),
                    lambda flat: nn.Linear(flat, num_classes, bias=True))
        self.share_static_stem = False  # BatchNorm mixes rows (see SpikingNetwork)
        self._finish(f"bn-vgg{depth}", depth=depth)


class EICNN(_VGG):
    """A VGG-style E-I network with a free layer plan, for small data (e.g. [32, "P", 64, "P"])."""

    def __init__(self, layers: Sequence[int | str], in_shape: Sequence[int], num_classes: int,
                 T: int, options: EIOptions | dict[str, Any] | None = None) -> None:
        super().__init__(in_shape, num_classes, T)
        self.options = opts = as_options(options)
        plan = parse_layers(layers, type(self).__name__)
        self._build(plan,
                    lambda c_in, c_out: EIConv2d(c_in, c_out, 3, 1, 1, options=opts),
                    lambda flat: EILinear(flat, num_classes, opts, readout=True))
        self._finish("ei-cnn", layers=list(plan))


class BNCNN(_VGG):
    """BN-SNN counterpart of ``EICNN``."""

    def __init__(self, layers: Sequence[int | str], in_shape: Sequence[int], num_classes: int,
                 T: int) -> None:
        super().__init__(in_shape, num_classes, T)
        plan = parse_layers(layers, type(self).__name__)
        self._build(plan, lambda c_in, c_out: ConvBN(c_in, c_out, 3),
                    lambda flat: nn.Linear(flat, num_classes, bias=True))
        self.share_static_stem = False  # BatchNorm mixes rows (see SpikingNetwork)
        self._finish("bn-cnn", layers=list(plan))
