"""Spiking network architectures: E-I (DeepEISNN) networks and their BN-SNN baselines (spec §6)."""

from .base import SpikingNetwork
from .baseline import ConvBN, LinearBN
from .hardware import HardwareEIMLP
from .mlp import BNMLP, EIMLP
from .registry import ARCHITECTURES, build_network
from .resnet import BNResNet18, EIResNet18
from .vgg import BNVGG, EIVGG, VGG_CONFIGS, vgg_flat_features

__all__ = [
    "SpikingNetwork", "EIMLP", "BNMLP", "HardwareEIMLP", "EIVGG", "BNVGG", "EIResNet18",
    "BNResNet18", "ARCHITECTURES", "build_network", "VGG_CONFIGS", "vgg_flat_features", "ConvBN",
    "LinearBN",
]
