"""The DeepEISNN circuit as pure functions.

Everything the paper's E-I layer computes lives here, once: the excitatory LIF neuron (spec §2.1),
the fast-spiking inhibitory population (§2.2), the E-I integration of Eqs. 9-15 (§3) and the
adaptive stabilisation of the divisor (E-I Prop, §5.1). The torch modules in ``layers.py`` only hold
parameters and call these functions; the graph's float executor and the integer simulator mirror
them.

Tensor layout: time is folded into the batch, ``(T*B, ...)`` with row ``t*B + b`` (time-major).
Channel-wise parameters are 1-D vectors; ``channel_view`` broadcasts them over linear ``(N, C)`` and
convolutional ``(N, C, H, W)`` activations alike, so linear and conv layers share one code path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "LIFParameters",
    "channel_view",
    "scale_grad",
    "spike_fn",
    "lif_multistep",
    "lif_multistep_reference",
    "inhibitory_response",
    "stabilise_adaptive",
    "stabilise_fixed_eps",
    "pointwise_inhibition",
    "ei_integrate",
    "ei_readout",
]


@dataclass(frozen=True)
class LIFParameters:
    """Excitatory LIF constants (spikingjelly ``LIFNode``: decay_input=False, v_reset=None)."""

    tau: float = 2.0
    v_threshold: float = 1.0
    alpha: float = 4.0  # slope of the sigmoid surrogate gradient

    @property
    def decay(self) -> float:
        return 1.0 - 1.0 / self.tau


def channel_view(p: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-channel vector ``(C,)`` to broadcast against ``(N, C, *spatial)``."""
    return p.view((1, -1) + (1,) * (ndim - 2))


# --------------------------------------------------------------------------- gradient helpers
class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; multiplies the incoming gradient by ``scale`` (E-I Prop §5.2 for W_EI).

    Written as an autograd function rather than a tensor hook so that the scaling travels with the
    computation (works with DDP, deepcopy, torch.compile) and covers both the subtractive and the
    divisive pathway, exactly as the reference's hook on the parameter does.
    """
    if scale == 1.0:
        return x
    return _ScaleGrad.apply(x, scale)


class _SigmoidSpike(torch.autograd.Function):
    """Heaviside(z) forward (z >= 0 spikes), sigmoid surrogate backward."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.alpha = alpha
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (z,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * z)
        return grad * ctx.alpha * sg * (1.0 - sg), None


def spike_fn(z: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    """``s = H(z)`` with ``ds/dz = alpha * sig(alpha z) * (1 - sig(alpha z))`` (spec §2.1)."""
    return _SigmoidSpike.apply(z, alpha)


# --------------------------------------------------------------------------- LIF (spec §2.1)
def lif_multistep_reference(x_seq: torch.Tensor, p: LIFParameters = LIFParameters()) -> torch.Tensor:
    """Plain autograd version of the LIF over ``(T, B, ...)``: the specification, step by step.

    h[t] = decay * u[t-1] + I[t];  s[t] = H(h[t] - theta);  u[t] = h[t] - theta * s[t].detach()
    """
    u = torch.zeros_like(x_seq[0])
    spikes = []
    for x_t in x_seq:
        h = p.decay * u + x_t
        s = spike_fn(h - p.v_threshold, p.alpha)
        u = h - p.v_threshold * s.detach()
        spikes.append(s)
    return torch.stack(spikes)


class _LIFMultiStep(torch.autograd.Function):
    """Fused LIF over time: stores only the charged membrane ``h`` for the backward pass.

    Because the reset spike is detached, ``du[t]/dh[t] = 1`` and the BPTT recursion is
    ``g_h[t] = g_s[t] * sg'(h[t] - theta) + decay * g_h[t+1]``, ``g_x[t] = g_h[t]``. This saves
    the T intermediate autograd nodes and their buffers of ``lif_multistep_reference``.
    """

    @staticmethod
    def forward(ctx, x_seq: torch.Tensor, decay: float, theta: float, alpha: float):
        h_seq = torch.empty_like(x_seq)
        s_seq = torch.empty_like(x_seq)
        u = torch.zeros_like(x_seq[0])
        for t in range(x_seq.shape[0]):
            h = torch.add(x_seq[t], u, alpha=decay)
            s = (h >= theta).to(x_seq.dtype)
            h_seq[t] = h
            s_seq[t] = s
            u = h - theta * s
        ctx.save_for_backward(h_seq)
        ctx.constants = (decay, theta, alpha)
        return s_seq

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):
        (h_seq,) = ctx.saved_tensors
        decay, theta, alpha = ctx.constants
        sg = torch.sigmoid(alpha * (h_seq - theta))
        local = grad_s * (alpha * sg * (1.0 - sg))
        grad_x = torch.empty_like(h_seq)
        carry = torch.zeros_like(h_seq[0])
        for t in range(h_seq.shape[0] - 1, -1, -1):
            carry = torch.add(local[t], carry, alpha=decay)
            grad_x[t] = carry
        return grad_x, None, None, None


def lif_multistep(x_seq: torch.Tensor, p: LIFParameters = LIFParameters()) -> torch.Tensor:
    """Multi-step excitatory LIF over ``(T, B, ...)``, membranes starting at 0 (``s = LIF(I)``)."""
    return _LIFMultiStep.apply(x_seq, p.decay, p.v_threshold, p.alpha)


# --------------------------------------------------------------------------- inhibitory (§2.2)
class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, theta: float) -> torch.Tensor:
        return torch.floor(torch.relu(x) / theta)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # Paper D.5: backprop through the linear approximation r_I = I_IE.
        return grad, None


InhibitoryMode = Literal["identity", "floor"]


def inhibitory_response(i_ie: torch.Tensor, mode: InhibitoryMode = "identity",
                        theta_i: float = 1.0) -> torch.Tensor:
    """Fast-spiking interneurons: ``r_I = I_IE`` (reference) or ``floor(relu(I_IE)/theta_I)`` (paper).

    The identity is exact for the paper's ReLU because inputs and W_IE are non-negative; the floor
    is the spike count a neuron with soft reset emits within one step, with a straight-through
    gradient.
    """
    if mode == "identity":
        return i_ie
    if mode == "floor":
        return _FloorSTE.apply(i_ie, theta_i)
    raise ValueError(f"unknown inhibitory mode {mode!r}; use 'identity' or 'floor'")


# --------------------------------------------------------------------------- E-I Prop (§5.1)
def stabilise_adaptive(i_div: torch.Tensor) -> torch.Tensor:
    """Replace exact zeros of the divisor by the row's smallest positive value; identity gradient.

    A row is one (t, b) slice over all channels and positions. An all-zero row stays at +inf
    (the reference's quirk), so the divisive path returns 0 there and the output is just b_E.
    """
    # No early exit when nothing is zero: testing that would cost a device-to-host sync per layer.
    flat = i_div.detach().flatten(1)
    zero = flat == 0
    inf = torch.tensor(math.inf, dtype=flat.dtype, device=flat.device)
    row_min = torch.where(zero, inf, flat).amin(dim=1, keepdim=True)
    replaced = torch.where(zero, row_min, flat).view_as(i_div)
    return replaced + (i_div - i_div.detach())


def stabilise_fixed_eps(i_div: torch.Tensor, eps: float) -> torch.Tensor:
    """The ablation of Table 2: a constant added to the divisor."""
    return i_div + eps


# --------------------------------------------------------------------------- E-I circuit (§3)
def pointwise_inhibition(w_ei: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``W_EI · r`` over the channel axis: a matmul for linear and a 1x1 conv for conv layers."""
    if r.dim() == 2:
        return F.linear(r, w_ei)
    return F.conv2d(r, w_ei[:, :, None, None])


def ei_integrate(
    i_ee: torch.Tensor,
    r_i: torch.Tensor,
    w_ei: torch.Tensor,
    gain_i: torch.Tensor,
    gain_e: torch.Tensor,
    bias: torch.Tensor,
    stabilise=stabilise_adaptive,
) -> torch.Tensor:
    """Eqs. 12-14: ``I_int = g_E (I_EE - W_EI r_I) / Stab(W_EI (g_I r_I)) + b_E``.

    The subtractive and the divisive path share W_EI, so both are computed in one product over the
    stacked ``[r_I, g_I r_I]``.
    """
    nd = r_i.dim()
    n = r_i.shape[0]
    both = pointwise_inhibition(w_ei, torch.cat([r_i, r_i * channel_view(gain_i, nd)]))
    i_sub, i_div = both[:n], both[n:]
    return (channel_view(gain_e, nd) * (i_ee - i_sub) / stabilise(i_div)
            + channel_view(bias, nd))


def ei_readout(i_ee: torch.Tensor, r_i: torch.Tensor, w_ei: torch.Tensor) -> torch.Tensor:
    """Output layer: ``o = I_EE - I_sub``; no division, no gains, no LIF (spec §3)."""
    return i_ee - pointwise_inhibition(w_ei, r_i)
