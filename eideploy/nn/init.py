"""E-I Init (Algorithm 1; spec §4.2): one data-dependent pass, layer by layer in forward order."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .layers import EILayer, name_ei_layers

__all__ = ["ei_init", "is_initialised", "DEFAULT_INIT_SEED"]

DEFAULT_INIT_SEED = 2025


def ei_layers(model: nn.Module) -> list[EILayer]:
    return [m for m in model.modules() if isinstance(m, EILayer)]


def is_initialised(model: nn.Module) -> bool:
    layers = ei_layers(model)
    return bool(layers) and all(bool(m.initialised) for m in layers)


@torch.no_grad()
def ei_init(model: nn.Module, batch: torch.Tensor,
            seed: int = DEFAULT_INIT_SEED) -> list[dict[str, float]]:
    """Initialise every E-I layer from the statistics of its actual input on ``batch``.

    The model runs forward once in eval mode; each layer, when reached, computes ``E[x]``,
    ``E[x^2]`` and the across-row variance of its input (the output of the layers already
    initialised before it, LSUV-style), draws ``W_EE`` then ``W_IE`` from Exp(scale 1/lambda) with
    one numpy generator shared in forward order, and sets ``g_I``. Calling it again re-initialises;
    loading a checkpoint never does (the ``initialised`` buffer is saved with the weights).

    Returns one record per layer: name, fan-in, input statistics, 1/lambda and g_I.
    Raises ``ValueError`` naming the layer for NaN, negative or all-zero inputs.
    """
    layers = ei_layers(model)
    if not layers:
        raise ValueError(f"ei_init: {type(model).__name__} has no E-I layers to initialise")
    if not torch.is_tensor(batch) or not batch.is_floating_point():
        raise ValueError("ei_init: the batch must be a floating-point tensor of inputs")
    name_ei_layers(model)
    rng = np.random.default_rng(seed)
    for layer in layers:
        layer.initialised.fill_(False)
        layer._ready = False
        layer._init_rng = rng
    was_training = model.training
    model.eval()
    try:
        model(batch)
    finally:
        for layer in layers:
            layer._init_rng = None
        model.train(was_training)
    missing = [m.layer_name for m in layers if not bool(m.initialised)]
    if missing:
        raise ValueError(f"ei_init: layer(s) {', '.join(missing)} were not reached by the forward "
                         "pass and stay uninitialised")
    return [{"layer": m.layer_name, **(m.init_stats or {})} for m in layers]
