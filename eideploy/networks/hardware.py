"""Hardware-aware E-I networks: an E-I MLP that fits DYNAP-SE2 by construction.

What the chip needs (spec/dynapse2.md §3) and where this network provides it:

* fan-in budgets: every E-I layer keeps ``K_in`` inputs per E and I neuron and ``K_inh``
  interneurons per E neuron (``K_in + 2 K_inh <= 64`` CAM entries; the readout's interneurons
  cost one entry each, GABA only), as connectivity masks on the layers
  (``eideploy.nn.connectivity``): ``random``, ``local`` (sparse local receptive fields on the
  input map, first layer) or ``pruned`` (dense at first, magnitude-pruned to the budget by the
  trainer's schedule, :meth:`HardwareEIMLP.prune_`);
* spikes in: the input is encoded (``if`` or ``bernoulli``, ``eideploy.nn.encoding``) before the
  first layer, so the network is trained on the spikes the host will send;
* spikes out: with ``theta_out`` the readout is a non-leaky integrate-and-fire neuron; training
  still fits the time-averaged current (cross-entropy on ``mean_t o[t]``), and :meth:`predict`
  decides by spike count, ties broken by membrane;
* interneurons as spike counts (``options.inhibitory = "floor"``), b_E shared per core or absent
  (``options.bias``), a divisor the chip realises (``options.stabilisation = "fixed-eps"`` with
  ``eps`` the leak floor): all through :class:`~eideploy.nn.EIOptions`.

The masks are buffers of the layers, so a checkpoint rebuilds the exact connectivity; the seeded
generators only choose the masks of a freshly built network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nn import EILinear, EIOptions
from ..nn.connectivity import (
    CONNECTIVITIES,
    local_mask,
    nearest_mask,
    random_mask,
    top_k_mask,
)
from ..nn.encoding import ENCODINGS, class_sums, encode, if_readout, readout_decision
from .base import SpikingNetwork, as_options
from .mlp import _check_widths

__all__ = ["HardwareEIMLP"]


def _per_layer(owner: str, name: str, value: Any, n_layers: int) -> list[Any]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_layers
    if len(values) != n_layers:
        raise ValueError(f"{owner}: {name} has {len(values)} entries, the network has {n_layers} "
                         "E-I layers (hidden layers and the readout)")
    return values


class HardwareEIMLP(SpikingNetwork):
    """Encoder -> Flatten -> [budgeted EILinear -> LIF] per width -> budgeted EILinear readout.

    ``fan_in`` (K_in) and ``connectivity`` are one value or one per E-I layer (hidden layers,
    then the readout); ``fan_in_inh`` (K_inh) is capped by each layer's interneuron count.
    ``window``: side of the local receptive fields (default: about 2 K_in pixels).
    """

    def __init__(self, in_shape: Sequence[int], num_classes: int, widths: Sequence[int], T: int,
                 options: EIOptions | dict[str, Any] | None = None, *,
                 fan_in: int | Sequence[int] = 48, fan_in_inh: int = 8,
                 connectivity: str | Sequence[str] = "random", encoding: str = "if",
                 theta_out: float | None = None, window: int | None = None,
                 seed: int = 0, readout_copies: int = 1) -> None:
        super().__init__(in_shape, num_classes, T)
        owner = type(self).__name__
        if isinstance(readout_copies, bool) or not isinstance(readout_copies, int) or \
                not 1 <= readout_copies <= 64:
            raise ValueError(f"{owner}: readout_copies must be an integer in 1..64, got "
                             f"{readout_copies!r}")
        # a population readout, trained: each class has readout_copies neurons of their own
        # connectivity and weights, decided by their summed spikes (docs/hardware-aware.md §5)
        self.readout_copies = int(readout_copies)
        self.options = as_options(options)
        widths = _check_widths(owner, widths)
        n_layers = len(widths) + 1
        budgets = [int(k) for k in _per_layer(owner, "fan_in", fan_in, n_layers)]
        kinds = [str(c) for c in _per_layer(owner, "connectivity", connectivity, n_layers)]
        for kind in kinds:
            if kind not in CONNECTIVITIES:
                raise ValueError(f"{owner}: connectivity {kind!r} is not one of "
                                 f"{', '.join(CONNECTIVITIES)}")
        if any(k < 1 for k in budgets) or int(fan_in_inh) < 1:
            raise ValueError(f"{owner}: fan_in and fan_in_inh must be >= 1, got {budgets} and "
                             f"{fan_in_inh}")
        if encoding not in ENCODINGS:
            raise ValueError(f"{owner}: encoding {encoding!r} is not one of "
                             f"{', '.join(ENCODINGS)}")
        if theta_out is not None and not (math.isfinite(theta_out) and theta_out > 0):
            raise ValueError(f"{owner}: theta_out must be a positive number, got {theta_out!r}")
        self.encoding = encoding
        self.theta_out = None if theta_out is None else float(theta_out)
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        mods: list[nn.Module] = [nn.Flatten()]
        d = math.prod(self.in_shape)
        self.budgets: list[tuple[int, int]] = []  # (K_in, K_inh) per E-I layer
        self.connectivity = kinds
        for index, width in enumerate([*widths, num_classes * self.readout_copies]):
            readout = index == len(widths)
            layer = EILinear(d, width, self.options, readout=readout)
            k_in, k_inh = min(budgets[index], d), min(int(fan_in_inh), layer.n_i)
            self.budgets.append((k_in, k_inh))
            layer.set_connectivity(*self._masks(kinds[index], layer, k_in, k_inh, index, window,
                                                rng))
            mods.append(layer)
            if not readout:
                mods.append(self.lif())
            d = width
        self.layers = nn.Sequential(*mods)
        self._finish("ei-hw-mlp", widths=widths, fan_in=budgets, fan_in_inh=int(fan_in_inh),
                     connectivity=kinds, encoding=encoding, theta_out=self.theta_out,
                     window=window, seed=self.seed,
                     **({"readout_copies": self.readout_copies} if self.readout_copies > 1
                        else {}))

    def _masks(self, kind: str, layer: EILinear, k_in: int, k_inh: int, index: int,
               window: int | None, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d, n_e, n_i = layer.in_features, layer.n_e, layer.n_i
        if kind == "pruned":  # dense until the trainer's schedule prunes it
            return (np.ones((n_e, d), np.float32), np.ones((n_i, d), np.float32),
                    np.ones((n_e, n_i), np.float32))
        if kind == "local":
            if index != 0 or len(self.in_shape) != 3:
                raise ValueError(f"{type(self).__name__}: local connectivity is for the first "
                                 "layer over a (C, H, W) input; use random or pruned after it")
            return (local_mask(n_e, self.in_shape, k_in, rng, window),
                    local_mask(n_i, self.in_shape, k_in, rng, window),
                    nearest_mask(n_e, n_i, k_inh, self.in_shape, rng))
        return (random_mask(n_e, d, k_in, rng), random_mask(n_i, d, k_in, rng),
                random_mask(n_e, n_i, k_inh, rng))

    def ei_layers(self) -> list[EILinear]:
        return [m for m in self.layers if isinstance(m, EILinear)]

    # ---- learned connectivity
    @torch.no_grad()
    def prune_(self, budgets: Sequence[tuple[int, int]] | None = None) -> None:
        """Keep the largest effective weights of every ``pruned`` layer: per E and I neuron its
        ``K_in`` largest input weights, per E neuron its ``K_inh`` largest W_EI entries.

        ``budgets`` (one ``(K_in, K_inh)`` per E-I layer) default to the final budgets; the
        trainer passes the shrinking ones of its schedule. A mask already within its budget is
        left as it is, so pruned synapses never come back.
        """
        budgets = list(budgets) if budgets is not None else self.budgets
        for layer, kind, (k_in, k_inh) in zip(self.ei_layers(), self.connectivity, budgets,
                                              strict=True):
            if kind != "pruned":
                continue
            masks = []
            for weight, mask, k in zip(layer.effective_weights(),
                                       (layer.mask_ee, layer.mask_ie, layer.mask_ei),
                                       (k_in, k_in, k_inh), strict=True):
                within = int(mask.reshape(mask.shape[0], -1).sum(1).max()) <= k
                masks.append(mask if within else top_k_mask(weight, k))
            layer.set_connectivity(*masks)
            layer.weight_ee.mul_(layer.mask_ee)
            layer.weight_ie.mul_(layer.mask_ie)
            layer.weight_ei.mul_(layer.mask_ei)

    # ---- the forward pass
    def pipeline(self) -> list[nn.Module]:
        return list(self.layers)

    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *in_shape)`` or ``(B, T, *in_shape)`` -> ``(T*B, *in_shape)`` input spikes."""
        folded = self.fold_time(x)
        if self.encoding == "direct":
            return folded
        seq = folded.view(self.T, -1, *self.in_shape)
        generator = None
        if self.encoding == "bernoulli" and not self.training:
            # repeatable evaluation: the same spikes for the same batch
            generator = torch.Generator(device=seq.device).manual_seed(self.seed)
        return encode(seq, self.encoding, generator=generator).reshape(folded.shape)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoding == "direct":
            return super().forward_sequence(x)
        out = self.forward_folded(self.encode_input(x))
        return out.view(self.T, -1, out.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``: the time-averaged readout, averaged over each class's
        readout neurons when there are several (``readout_copies``)."""
        logits = self.forward_sequence(x).mean(0)
        return class_sums(logits, self.readout_copies) / self.readout_copies

    @torch.no_grad()
    def readout_spikes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(counts, membrane)`` per class of the integrate-and-fire readout (needs
        ``theta_out``), summed over each class's readout neurons."""
        if self.theta_out is None:
            raise ValueError("this network has a current readout (theta_out is None)")
        counts, membrane = if_readout(self.forward_sequence(x), self.theta_out)
        return (class_sums(counts, self.readout_copies),
                class_sums(membrane, self.readout_copies))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes: by spike count (ties: membrane) with a spiking readout, else by
        the largest time-averaged current."""
        if self.theta_out is None:
            return self(x).argmax(-1)
        return readout_decision(*self.readout_spikes(x))
