"""Architectures by name, so a recipe or a checkpoint can say which network it trained.

``build_network(net.arch_name, **net.arch_kwargs, options=net.options)`` rebuilds any network of
this package with the same parameter names and shapes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from ..nn import EIOptions
from .base import SpikingNetwork, as_options
from .hardware import HardwareEIMLP
from .mlp import BNMLP, EIMLP
from .resnet import BNResNet18, EIResNet18
from .vgg import BNCNN, BNVGG, EICNN, EIVGG

__all__ = ["ARCHITECTURES", "build_network"]

Builder = Callable[..., SpikingNetwork]


def _ei_mlp(*, in_shape: Sequence[int], num_classes: int, T: int, options: EIOptions,
            widths: Sequence[int] | None = None) -> SpikingNetwork:
    if widths is None:
        raise ValueError("ei-mlp needs widths=[...] (the hidden layer sizes)")
    return EIMLP(in_shape, num_classes, widths, T, options)


def _ei_hw_mlp(*, in_shape: Sequence[int], num_classes: int, T: int, options: EIOptions,
               widths: Sequence[int] | None = None, fan_in: int | Sequence[int] = 48,
               fan_in_inh: int = 8, connectivity: str | Sequence[str] = "random",
               encoding: str = "if", theta_out: float | None = None, window: int | None = None,
               seed: int = 0, readout_copies: int = 1) -> SpikingNetwork:
    if widths is None:
        raise ValueError("ei-hw-mlp needs widths=[...] (the hidden layer sizes)")
    return HardwareEIMLP(in_shape, num_classes, widths, T, options, fan_in=fan_in,
                         fan_in_inh=fan_in_inh, connectivity=connectivity, encoding=encoding,
                         theta_out=theta_out, window=window, seed=seed,
                         readout_copies=readout_copies)


def _bn_mlp(*, in_shape: Sequence[int], num_classes: int, T: int, options: EIOptions,
            widths: Sequence[int] | None = None) -> SpikingNetwork:
    if widths is None:
        raise ValueError("bn-mlp needs widths=[...] (the hidden layer sizes)")
    return BNMLP(in_shape, num_classes, widths, T)


def _vgg(vgg_depth: int, ei: bool) -> Builder:
    name = f"{'ei' if ei else 'bn'}-vgg{vgg_depth}"

    def build(*, in_shape: Sequence[int], num_classes: int, T: int, options: EIOptions,
              depth: int = vgg_depth) -> SpikingNetwork:
        # ``depth`` is accepted so that a network's own arch_kwargs round-trip, but must agree.
        if depth != vgg_depth:
            raise ValueError(f"{name} has depth {vgg_depth}, got depth={depth!r}")
        if ei:
            return EIVGG(depth, in_shape, num_classes, T, options)
        return BNVGG(depth, in_shape, num_classes, T)

    build.__name__ = name.replace("-", "_")
    return build


def _cnn(ei: bool) -> Builder:
    name = f"{'ei' if ei else 'bn'}-cnn"

    def build(*, in_shape: Sequence[int], num_classes: int, T: int, options: EIOptions,
              layers: Sequence[int | str] | None = None) -> SpikingNetwork:
        if layers is None:
            raise ValueError(f"{name} needs layers=[...] (conv widths and 'P' for pools)")
        if ei:
            return EICNN(layers, in_shape, num_classes, T, options)
        return BNCNN(layers, in_shape, num_classes, T)

    build.__name__ = name.replace("-", "_")
    return build


def _ei_resnet18(*, in_shape: Sequence[int], num_classes: int, T: int,
                 options: EIOptions) -> SpikingNetwork:
    return EIResNet18(in_shape, num_classes, T, options)


def _bn_resnet18(*, in_shape: Sequence[int], num_classes: int, T: int,
                 options: EIOptions) -> SpikingNetwork:
    return BNResNet18(in_shape, num_classes, T)


ARCHITECTURES: dict[str, Builder] = {
    "ei-mlp": _ei_mlp,
    **{f"ei-vgg{d}": _vgg(d, ei=True) for d in (8, 11, 16, 19)},
    "ei-resnet18": _ei_resnet18,
    "ei-cnn": _cnn(ei=True),
    "ei-hw-mlp": _ei_hw_mlp,
    "bn-mlp": _bn_mlp,
    **{f"bn-vgg{d}": _vgg(d, ei=False) for d in (8, 11, 16, 19)},
    "bn-resnet18": _bn_resnet18,
    "bn-cnn": _cnn(ei=False),
}


def build_network(name: str, *, in_shape: Sequence[int], num_classes: int, T: int,
                  options: EIOptions | dict[str, Any] | None = None,
                  **kwargs: Any) -> SpikingNetwork:
    """Build the architecture ``name`` (see ``ARCHITECTURES``); ``options`` is ignored by bn-*.

    Extra keyword arguments are architecture-specific (``widths`` for the MLPs); an unknown name
    or argument raises ``ValueError`` listing what is accepted.
    """
    builder = ARCHITECTURES.get(name)
    if builder is None:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    accepted = [p for p in inspect.signature(builder).parameters
                if p not in ("in_shape", "num_classes", "T", "options")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{name} does not take {', '.join(unknown)}; its extra arguments: "
                         f"{', '.join(accepted) or 'none'}")
    opts = as_options(options) if name.startswith("ei-") else EIOptions()
    return builder(in_shape=in_shape, num_classes=num_classes, T=T, options=opts, **kwargs)
