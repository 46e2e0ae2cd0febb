"""Budgeted connectivity: which inputs each neuron of an E-I layer listens to.

DYNAP-SE2 gives every neuron 64 CAM entries for all its synapses (spec/dynapse2.md §2-§3): an E
neuron spends one per input (AMPA) and two per interneuron it listens to (GABA and SHUNT, the
paper's subtractive and divisive paths share W_EI but are two synapses on the chip), an I neuron
one per input. So a deployable layer keeps, per neuron, at most ``K_in`` inputs and ``K_inh``
interneurons with ``K_in + 2 K_inh <= 64``. The layer holds that choice as 0/1 masks
(``EILayer.set_connectivity``); this module makes them:

* :func:`random_mask`: ``K`` of the ``d`` inputs per neuron, uniformly (fixed, seeded);
* :func:`local_mask`: for image inputs, ``K`` inputs drawn from a window around the neuron's
  position on the map, the positions tiled over the map (fixed, seeded): a sparse local receptive
  field, the chip-friendly form of a convolution without weight sharing;
* :func:`nearest_mask`: each E neuron's ``K_inh`` interneurons chosen nearest to it on the map
  (local lateral inhibition for a local layer);
* :func:`top_k_mask` with :func:`pruning_budget`: learned connectivity, magnitude pruning whose
  per-neuron budget shrinks linearly from dense to ``K`` over given epochs.

The generators are numpy with a ``default_rng(seed)``: a seed gives the same masks anywhere.
Nothing here imports a target; the budget numbers come from the recipe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["CONNECTIVITIES", "random_mask", "local_mask", "positions", "nearest_mask",
           "top_k_mask", "pruning_budget", "fan_in_budget_ok"]

CONNECTIVITIES = ("random", "local", "pruned")


def _check(n: int, d: int, k: int) -> int:
    if n < 1 or d < 1:
        raise ValueError(f"a mask needs positive sizes, got {n} neurons and {d} inputs")
    if k < 1:
        raise ValueError(f"a fan-in budget must be >= 1, got {k}")
    return min(k, d)


def random_mask(n: int, d: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, d)`` 0/1 float32 mask with exactly ``min(k, d)`` ones per row, chosen uniformly."""
    k = _check(n, d, k)
    order = np.argsort(rng.random((n, d)), axis=1)[:, :k]
    mask = np.zeros((n, d), np.float32)
    np.put_along_axis(mask, order, 1.0, axis=1)
    return mask


def positions(n: int, height: int, width: int) -> np.ndarray:
    """``(n, 2)`` float (y, x) centres for ``n`` neurons tiled over a ``height x width`` map.

    The neurons fill a ``g x g`` grid of evenly spaced centres, neuron ``j`` at centre
    ``j mod g^2``. ``g`` is the largest side with at most one centre per pixel whose ``g^2``
    divides ``n`` (so every centre holds the same number of neurons: 1024 neurons on 28x28 sit
    4 to each of 16x16 centres), or the largest side that fits when none divides.
    """
    cells = min(n, height * width)
    fits = max(1, math.isqrt(cells))
    side = next((g for g in range(fits, 0, -1) if n % (g * g) == 0), fits)
    cell = np.arange(n) % (side * side)
    y = (cell // side + 0.5) * height / side
    x = (cell % side + 0.5) * width / side
    return np.stack([y, x], axis=1)


def default_window(k: int, channels: int) -> int:
    """Window side for a local field of ``k`` inputs: about twice ``k`` pixels to choose from."""
    return max(1, math.ceil(math.sqrt(2.0 * k / channels)))


def local_mask(n: int, in_shape: Sequence[int], k: int, rng: np.random.Generator,
               window: int | None = None) -> np.ndarray:
    """``(n, C*H*W)`` mask (C-major, as ``Flatten``): each neuron's ``min(k, C w^2)`` inputs drawn
    uniformly from the ``C x w x w`` window around its :func:`positions` centre, the window moved
    inward at the borders so every neuron has the same choice."""
    if len(in_shape) == 1:
        in_shape = (1, 1, int(in_shape[0]))
    if len(in_shape) != 3:
        raise ValueError(f"local connectivity needs a (C, H, W) input, got {tuple(in_shape)}")
    c, h, w = (int(s) for s in in_shape)
    d = c * h * w
    k = _check(n, d, k)
    side_y = side_x = window if window is not None else default_window(k, c)
    side_y, side_x = min(side_y, h), min(side_x, w)
    if c * side_y * side_x < k:
        raise ValueError(f"a {side_y}x{side_x} window over {c} channel(s) has fewer than the "
                         f"{k} inputs asked for; use a larger window")
    centre = positions(n, h, w)
    top = np.clip(np.floor(centre[:, 0] - side_y / 2 + 0.5).astype(int), 0, h - side_y)
    left = np.clip(np.floor(centre[:, 1] - side_x / 2 + 0.5).astype(int), 0, w - side_x)
    # Candidates: every (channel, dy, dx) of the window, as flat C-major input indices.
    ch, dy, dx = np.meshgrid(np.arange(c), np.arange(side_y), np.arange(side_x), indexing="ij")
    ch, dy, dx = ch.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    flat = (ch[None, :] * h + top[:, None] + dy[None, :]) * w + left[:, None] + dx[None, :]
    pick = np.argsort(rng.random(flat.shape), axis=1)[:, :k]
    mask = np.zeros((n, d), np.float32)
    np.put_along_axis(mask, np.take_along_axis(flat, pick, axis=1), 1.0, axis=1)
    return mask


def nearest_mask(n_e: int, n_i: int, k: int, in_shape: Sequence[int],
                 rng: np.random.Generator) -> np.ndarray:
    """``(n_E, n_I)`` mask: each E neuron listens to the ``k`` interneurons whose centres on the
    ``in_shape`` map (:func:`positions`) are nearest its own; ties broken at random."""
    k = _check(n_e, n_i, k)
    h, w = (int(in_shape[-2]), int(in_shape[-1])) if len(in_shape) >= 2 else (1, int(in_shape[0]))
    pe, pi = positions(n_e, h, w), positions(n_i, h, w)
    dist = ((pe[:, None, :] - pi[None, :, :]) ** 2).sum(-1) + 1e-6 * rng.random((n_e, n_i))
    pick = np.argsort(dist, axis=1)[:, :k]
    mask = np.zeros((n_e, n_i), np.float32)
    np.put_along_axis(mask, pick, 1.0, axis=1)
    return mask


@torch.no_grad()
def top_k_mask(weight: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 mask of the ``k`` largest magnitudes of each row of ``weight`` (``(n, ...)``); ties
    go to the lower index (a stable sort, where ``torch.topk`` leaves them unspecified)."""
    flat = weight.detach().reshape(weight.shape[0], -1).abs()
    d = flat.shape[1]
    k = max(0, min(int(k), d))
    mask = torch.zeros_like(flat)
    if k:
        order = torch.sort(flat, dim=1, descending=True, stable=True).indices
        mask.scatter_(1, order[:, :k], 1.0)
    return mask.view_as(weight)


def pruning_budget(dense: int, budget: int, epoch: int, start: int, epochs: int) -> int:
    """Per-neuron budget at the start of ``epoch`` (0-based): ``dense`` before ``start``, then
    shrinking linearly to ``budget`` over ``epochs`` epochs (reached at epoch start+epochs-1)."""
    if epochs <= 0 or epoch >= start + epochs - 1:
        return min(budget, dense) if epoch >= start else dense
    if epoch < start:
        return dense
    done = (epoch - start + 1) / epochs
    return max(min(budget, dense), int(round(dense - (dense - budget) * done)))


def fan_in_budget_ok(k_in: int, k_inh: int, cam_entries: int = 64) -> bool:
    """An E neuron's CAM entries: ``K_in`` AMPA + ``K_inh`` GABA + ``K_inh`` SHUNT."""
    return k_in + 2 * k_inh <= cam_entries
