"""SEW ResNet-18 with the CIFAR stem (spec §6), as an E-I network and as the BN-SNN baseline.

A BasicBlock is unit3x3(stride) -> LIF -> unit3x3 -> LIF, and its output is ``spikes + shortcut``
(SEW "ADD" after the second LIF), so activities become small integers that accumulate within a
stage; they stay >= 0, which E-I Init and the identity interneurons rely on (spec §2.2). The
shortcut is the identity, or unit1x1(stride) -> LIF where the stride or the width changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..nn import LIF, EIConv2d, EILinear, EIOptions
from .base import SpikingNetwork, as_options
from .baseline import ConvBN, kaiming_init_

__all__ = ["EIResNet18", "BNResNet18", "BasicBlock", "RESNET18_STAGES"]

# (width, stride of the first block) per stage; two BasicBlocks per stage.
RESNET18_STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 2), (512, 2))
BLOCKS_PER_STAGE = 2

ConvUnit = Callable[[int, int, int, int], nn.Module]  # (c_in, c_out, kernel, stride) -> module


class BasicBlock(nn.Module):
    """SEW BasicBlock with ADD connect; the conv unit (E-I or conv+BN) is passed in."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, conv_unit: ConvUnit,
                 make_lif: Callable[[], LIF]) -> None:
        super().__init__()
        self.conv1 = conv_unit(in_channels, out_channels, 3, stride)
        self.lif1 = make_lif()
        self.conv2 = conv_unit(out_channels, out_channels, 3, 1)
        self.lif2 = make_lif()
        if stride != 1 or in_channels != out_channels:
            self.downsample: nn.Module = nn.Sequential(
                conv_unit(in_channels, out_channels, 1, stride), make_lif())
        else:
            self.downsample = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif2(self.conv2(self.lif1(self.conv1(x)))) + self.downsample(x)


class _ResNet18(SpikingNetwork):
    """Stem (3x3, stride 1, no max-pool) -> 4 stages x 2 blocks -> GAP -> flatten -> head."""

    def _build(self, conv_unit: ConvUnit, head: Callable[[int], nn.Module]) -> None:
        if len(self.in_shape) != 3:
            raise ValueError(f"{type(self).__name__}: in_shape must be (C, H, W), "
                             f"got {self.in_shape}")
        channels = 64
        self.conv1 = conv_unit(self.in_shape[0], channels, 3, 1)
        self.lif1 = self.lif()
        for index, (width, stride) in enumerate(RESNET18_STAGES, start=1):
            blocks = []
            for b in range(BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(channels, width, stride if b == 0 else 1, conv_unit,
                                         self.lif))
                channels = width
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = head(channels)

    def pipeline(self) -> list[nn.Module]:
        return [self.conv1, self.lif1, self.layer1, self.layer2, self.layer3, self.layer4,
                self.avgpool, self.flatten, self.fc]


class EIResNet18(_ResNet18):
    """E-I SEW ResNet-18: every conv an EIConv2d (d = C_in k^2), EILinear readout 512 -> classes."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, T: int,
                 options: EIOptions | dict[str, Any] | None = None) -> None:
        super().__init__(in_shape, num_classes, T)
        self.options = opts = as_options(options)
        self._build(lambda c_in, c_out, k, stride: EIConv2d(c_in, c_out, k, stride, k // 2,
                                                            options=opts),
                    lambda width: EILinear(width, num_classes, opts, readout=True))
        self._finish("ei-resnet18")


class BNResNet18(_ResNet18):
    """BN-SNN baseline SEW ResNet-18: Conv2d(no bias) + BN2d + LIF, Kaiming init, biased head."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, T: int) -> None:
        super().__init__(in_shape, num_classes, T)
        self._build(lambda c_in, c_out, k, stride: ConvBN(c_in, c_out, k, stride),
                    lambda width: nn.Linear(width, num_classes, bias=True))
        kaiming_init_(self)
        self.share_static_stem = False  # BatchNorm mixes rows (see SpikingNetwork)
        self._finish("bn-resnet18")
