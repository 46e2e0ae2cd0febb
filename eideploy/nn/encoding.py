"""Spikes in, spikes out: input encoders and the spiking readout of hardware models.

DYNAP-SE2 moves spikes only (spec/dynapse2.md §3.6-3.7): the host sends the input as spike
trains and reads the classes as spike counts. These are the pure functions for both ends; the
graph's float executor mirrors them in numpy (``eideploy.graph.execute``), operation for
operation, so the torch model and the exported graph see the very same spikes.

Input encoders map intensities in [0, 1] (time-major ``(T, B, ...)``; a static image is the same
at every step) to 0/1 spikes:

* ``if``: deterministic integrate-and-fire, ``u += x; s = u >= 1; u -= s``, membranes starting at
  ``IF_PHASE = 0.5``: over T steps a constant intensity gives ``floor(T x + 0.5)`` spikes, the
  nearest count (a start at 0 would floor, biasing every pixel dark);
* ``bernoulli``: ``s ~ Bernoulli(x)`` independently per step (a torch generator; seeded per
  batch in evaluation, so evaluation is repeatable);
* ``direct``: no encoding, the analog values themselves (the paper's setting; not for the chip).

The spiking readout is a non-leaky integrate-and-fire neuron with soft reset and an unbounded
membrane driven by the readout current ``o[t] = I_EE - I_sub``: ``v += o[t]``, then it emits
``n = floor(max(v, 0) / theta)`` spikes and ``v -= n theta`` (as many spikes as the step's charge
allows, like the fast interneurons). Nothing is lost, so ``count * theta + v = sum_t o[t]``
exactly (up to float rounding), and the class is the largest count with ties broken by the
membrane. That decision equals ``argmax sum_t o[t]`` (the trained logits) whenever every final
membrane lies in ``[0, theta)``, which always holds when the membranes never go negative.
"""

from __future__ import annotations

import torch

__all__ = ["ENCODINGS", "IF_PHASE", "if_encode", "bernoulli_encode", "encode", "if_readout",
           "class_sums",
           "readout_decision"]

ENCODINGS = ("direct", "if", "bernoulli")
#: Initial membrane of the integrate-and-fire encoder: counts round to nearest.
IF_PHASE = 0.5


def if_encode(x_seq: torch.Tensor, threshold: float = 1.0,
              phase: float = IF_PHASE) -> torch.Tensor:
    """Deterministic integrate-and-fire encoding of ``(T, B, ...)`` intensities into 0/1 spikes.

    ``u[-1] = phase``; ``u = u + x[t]``; ``s[t] = u >= threshold``; ``u = u - threshold s[t]``.
    No gradient flows to the input (it is data).
    """
    x_seq = x_seq.detach()
    u = torch.full_like(x_seq[0], phase)
    spikes = torch.empty_like(x_seq)
    for t in range(x_seq.shape[0]):
        u = u + x_seq[t]
        s = (u >= threshold).to(x_seq.dtype)
        u = u - s * threshold
        spikes[t] = s
    return spikes


def bernoulli_encode(x_seq: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """``s[t] ~ Bernoulli(clamp(x[t], 0, 1))``, independently per element and step."""
    x_seq = x_seq.detach().clamp(0.0, 1.0)
    noise = torch.rand(x_seq.shape, generator=generator, dtype=x_seq.dtype,
                       device=x_seq.device)
    return (noise < x_seq).to(x_seq.dtype)


def encode(x_seq: torch.Tensor, encoding: str, *, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """Apply the named encoding (``ENCODINGS``) to ``(T, B, ...)`` intensities."""
    if encoding == "direct":
        return x_seq
    if encoding == "if":
        return if_encode(x_seq)
    if encoding == "bernoulli":
        return bernoulli_encode(x_seq, generator)
    raise ValueError(f"unknown input encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")


def if_readout(o_seq: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-leaky IF readout with soft reset over ``(T, B, classes)`` currents.

    Returns ``(counts, membrane)``, each ``(B, classes)``: the spikes emitted over the T steps and
    the final membrane, with ``counts * theta + membrane == o_seq.sum(0)`` (module doc).
    """
    if theta <= 0:
        raise ValueError(f"the readout threshold theta_out must be > 0, got {theta}")
    o_seq = o_seq.detach()
    v = torch.zeros_like(o_seq[0])
    counts = torch.zeros_like(o_seq[0])
    for t in range(o_seq.shape[0]):
        v = v + o_seq[t]
        n = torch.floor(torch.clamp(v, min=0.0) / theta)
        counts = counts + n
        v = v - n * theta
    return counts, v


def class_sums(values: torch.Tensor, copies: int = 1) -> torch.Tensor:
    """Per class, the sum of its ``copies`` readout neurons' ``values`` along the last axis
    (class-major: neuron ``j`` votes for class ``j // copies``, as the graph's population readout,
    ``graph.host.class_totals``); the values as they are for one neuron per class."""
    if copies == 1:
        return values
    return values.reshape(*values.shape[:-1], values.shape[-1] // copies, copies).sum(-1)


def readout_decision(counts: torch.Tensor, membrane: torch.Tensor) -> torch.Tensor:
    """The class with the most spikes; among equal counts, the one with the highest membrane."""
    top = counts.max(dim=-1, keepdim=True).values
    contenders = torch.where(counts == top, membrane, torch.full_like(membrane, -torch.inf))
    return contenders.argmax(dim=-1)
