"""The BN-SNN baseline's weight units (spec §6): a bias-free projection followed by BatchNorm.

BatchNorm runs over the folded ``T*B`` rows, as spikingjelly's multi-step containers do, so the
baseline normalises every time step with the same batch statistics.
"""

from __future__ import annotations

from torch import nn

__all__ = ["LinearBN", "ConvBN", "kaiming_init_"]


class LinearBN(nn.Sequential):
    """Linear without bias, then BatchNorm1d."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)


class ConvBN(nn.Sequential):
    """Conv2d without bias (padding k//2, so 3x3 keeps the size), then BatchNorm2d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)


def kaiming_init_(model: nn.Module) -> None:
    """The baseline ResNet's init (torchvision / SEW ResNet): Kaiming fan-out convs, BN (1, 0)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
