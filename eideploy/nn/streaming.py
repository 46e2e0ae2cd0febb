"""Streaming: the network stepped one time step at a time, its state held by the caller.

The layers compute over all ``T`` steps at once (``(T*B, ...)`` rows, spec §1). A deployed
network sees its input one step at a time instead (an event stream, a sensor), so here each
step is one call with explicit state, equal to the multi-step call:

* :func:`lif_step`: the excitatory LIF of spec §2.1 for one step,
  ``(I[t], u[t-1]) -> (s[t], u[t])`` with ``h = decay u + I``, ``s = H(h - theta)`` (surrogate
  gradient as in training), soft reset ``u = h - theta s``; ``u[-1] = 0`` (state ``None``).
* E-I layers hold no state across steps: every operation of Eqs. 9-15 acts on one row (one
  sample at one step), the adaptive stabilisation included (§5.1: per row), so an
  :class:`~eideploy.nn.layers.EILayer` called on one step's ``(B, ...)`` rows *is* its step.
* :func:`step_modules`: one step through a flat list of modules (a network's ``pipeline()``):
  each :class:`~eideploy.nn.layers.LIF` is stepped with its own state, every other module is
  called as it is (pools, flatten, E-I layers). A module that hides a LIF inside it (a residual
  block) cannot be stepped this way and is refused.

``tests/test_streaming.py`` holds them equal to the multi-step call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .functional import LIFParameters, spike_fn
from .layers import LIF

__all__ = ["lif_step", "StreamState", "step_modules"]

#: Per LIF of a module list (by position), its membrane ``u[t-1]``; ``None`` before step 0.
StreamState = list[torch.Tensor | None]
#: spec §2.1's constants (tau 2, theta 1, surrogate alpha 4)
DEFAULT_LIF = LIFParameters()


def lif_step(current: torch.Tensor, u: torch.Tensor | None,
             p: LIFParameters = DEFAULT_LIF) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the excitatory LIF (spec §2.1): spikes ``s[t]`` and the membrane ``u[t]``
    after the soft reset; ``u`` is ``u[t-1]`` (``None``: 0, the start of a sample)."""
    h = current if u is None else p.decay * u + current
    spikes = spike_fn(h - p.v_threshold, p.alpha)
    return spikes, h - p.v_threshold * spikes.detach()


def step_modules(modules: Sequence[nn.Module], x_t: torch.Tensor,
                 state: StreamState | None = None) -> tuple[torch.Tensor, StreamState]:
    """One time step ``x_t`` ``(B, ...)`` through ``modules`` in order; returns the output of
    the last one and the new state (one membrane per LIF). Start a sample with ``state=None``.
    """
    lifs = [m for m in modules if isinstance(m, LIF)]
    for module in modules:
        if not isinstance(module, LIF) and any(isinstance(m, LIF) for m in module.modules()):
            raise ValueError(f"{type(module).__name__} holds a LIF inside it; only a flat list "
                             "of modules (LIF, E-I layers, pools) can be stepped")
    state = list(state) if state is not None else [None] * len(lifs)
    if len(state) != len(lifs):
        raise ValueError(f"state holds {len(state)} membranes for {len(lifs)} LIF modules")
    index = 0
    for module in modules:
        if isinstance(module, LIF):
            x_t, state[index] = lif_step(x_t, state[index], module.params)
            index += 1
        else:
            x_t = module(x_t)
    return x_t, state
