"""The DeepEISNN circuit as pure functions.

Everything the paper's E-I layer computes lives here, once: the excitatory LIF neuron (spec §2.1),
the fast-spiking inhibitory population (§2.2), the E-I integration of Eqs. 9-15 (§3) and the
adaptive stabilisation of the divisor (E-I Prop, §5.1). The torch modules in ``layers.py`` only hold
parameters and call these functions; the graph's float executor and the integer simulator mirror
them.

``ei_integrate`` and ``ei_readout`` are the readable reference of Eqs. 9-15, composed from autograd
primitives. The layers run ``ei_integrate_fused`` / ``ei_readout_fused`` instead: the same values
and gradients (tested to float64 round-off), with the backward pass derived by hand so that a
training step does a few full-size passes instead of the dozens that autograd's op-by-op graph
would (each slice of the fused projection alone costs a zero-filled gradient buffer).

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
from torch.autograd.function import once_differentiable

from . import _kernels

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
    "stabilise",
    "pointwise_inhibition",
    "ei_integrate",
    "ei_integrate_currents",
    "ei_readout",
    "ei_readout_currents",
    "ei_integrate_fused",
    "ei_readout_fused",
    "conv2d",
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
def lif_multistep_reference(x_seq: torch.Tensor,
                            p: LIFParameters = LIFParameters()) -> torch.Tensor:
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
    the T intermediate autograd nodes and their buffers of ``lif_multistep_reference``. Both passes
    write into preallocated buffers rather than allocate a temporary per operation: the LIF runs
    after every layer, and its full-size elementwise passes are a large share of a CPU step.
    """

    @staticmethod
    def forward(ctx, x_seq: torch.Tensor, decay: float, theta: float, alpha: float):
        h_seq = torch.empty_like(x_seq)
        s_seq = torch.empty_like(x_seq)
        u = torch.empty_like(x_seq[0])
        steps = x_seq.shape[0]
        for t in range(steps):
            h = h_seq[t]
            if t == 0:
                h.copy_(x_seq[0])  # u[-1] = 0
            else:
                torch.add(x_seq[t], u, alpha=decay, out=h)  # h = decay * u + I
            torch.ge(h, theta, out=s_seq[t])
            if t + 1 < steps:
                torch.sub(h, s_seq[t], alpha=theta, out=u)  # soft reset u = h - theta * s
        ctx.save_for_backward(h_seq)
        ctx.constants = (decay, theta, alpha)
        return s_seq

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_s: torch.Tensor):
        (h_seq,) = ctx.saved_tensors
        decay, theta, alpha = ctx.constants
        # sg'(z) = alpha * sig(alpha z) (1 - sig(alpha z)): sigmoid_backward computes
        # grad * sig * (1 - sig) in one pass, in place; alpha is applied once after the
        # recursion, which is linear.
        local = torch.sub(h_seq, theta).mul_(alpha).sigmoid_()
        torch.ops.aten.sigmoid_backward.grad_input(grad_s, local, grad_input=local)
        for t in range(h_seq.shape[0] - 2, -1, -1):
            local[t].add_(local[t + 1], alpha=decay)
        return local.mul_(alpha), None, None, None


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
    """Fast-spiking interneurons: ``r_I = I_IE`` (reference) or ``floor(relu(I_IE)/theta_I)``
    (paper).

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
StabilisationMode = Literal["adaptive", "fixed-eps"]


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


def stabilise(i_div: torch.Tensor, mode: StabilisationMode = "adaptive",
              eps: float = 1e-3) -> torch.Tensor:
    """Stab() of §5.1 by name: ``adaptive`` (:func:`stabilise_adaptive`) or ``fixed-eps``
    (:func:`stabilise_fixed_eps`), as the graph's ``division.stabilisation`` names it."""
    if mode == "adaptive":
        return stabilise_adaptive(i_div)
    if mode == "fixed-eps":
        return stabilise_fixed_eps(i_div, eps)
    raise ValueError(f"unknown stabilisation {mode!r}; use 'adaptive' or 'fixed-eps'")


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
    n = r_i.shape[0]
    both = pointwise_inhibition(w_ei, torch.cat([r_i, r_i * channel_view(gain_i, r_i.dim())]))
    i_sub, i_div = both[:n], both[n:]
    return ei_integrate_currents(i_ee, i_sub, i_div, gain_e, bias, stabilise)


def ei_integrate_currents(
    i_ee: torch.Tensor,
    i_sub: torch.Tensor,
    i_div: torch.Tensor,
    gain_e: torch.Tensor | None,
    bias: torch.Tensor,
    stabilise=stabilise_adaptive,
) -> torch.Tensor:
    """Eq. 14 from the three currents: ``I_int = g_E (I_EE - I_sub) / Stab(I_div) + b_E``.

    The form the graph's executors take (``graph.execute.ei_integrate``), and the one for
    weights that are no longer shared between the two paths (QAT quantizes the GABA and SHUNT
    weights apart); ``gain_e`` None when g_E is folded into the weights.
    """
    nd = i_ee.dim()
    num = i_ee - i_sub
    if gain_e is not None:
        num = channel_view(gain_e, nd) * num
    return num / stabilise(i_div) + channel_view(bias, nd)


def ei_readout(i_ee: torch.Tensor, r_i: torch.Tensor, w_ei: torch.Tensor) -> torch.Tensor:
    """Output layer: ``o = I_EE - I_sub``; no division, no gains, no LIF (spec §3)."""
    return ei_readout_currents(i_ee, pointwise_inhibition(w_ei, r_i))


def ei_readout_currents(i_ee: torch.Tensor, i_sub: torch.Tensor) -> torch.Tensor:
    """The output layer from its currents: ``o = I_EE - I_sub`` (``graph.execute.ei_readout``)."""
    return i_ee - i_sub


# --------------------------------------------------------------------------- fused E-I circuit

#: Below this many positions per sample (H*W; 1 for linear layers) the point-wise W_EI product
#: and its gradients run as a 1x1 convolution, from it up as batched matmuls: on CPU, oneDNN's
#: 1x1 convolution (forward and backward) is up to 5x slower than the matmul on feature maps of
#: 32 positions and more and several times faster on smaller ones (measured on VGG-8 shapes, one
#: thread: 16x16 maps 19.6 -> 3.6 ms forward, 13.4 -> 7.1 ms backward). The results are the same
#: up to summation order.
MATMUL_MIN_POSITIONS = 32
#: The forward product alone turns to the matmul from fewer positions: on 4x4 maps (VGG-8's
#: fourth layer, 128 -> 1024 channels, N = 64, one thread) the batched matmul takes 2.1-2.8 ms
#: and the 1x1 convolution 4.5-7.0 ms, while its backward pass is as fast as the convolution's
#: and on 2x2 maps the convolution stays 3x faster.
MATMUL_MIN_POSITIONS_FORWARD = 16


def _by_position(t: torch.Tensor) -> torch.Tensor:
    """View ``(N, C, *spatial)`` as ``(N, C, L)``: a linear layer is a conv with ``L = 1``.

    This is what lets linear and conv layers share every line of the fused circuit below. (Not
    ``(N, C, L, 1)``: a trailing unit axis sends TensorIterator down a slow, unvectorised loop
    for new outputs, 8x slower on CPU.)
    """
    return t.reshape(t.shape[0], t.shape[1], -1)


def _mix(w: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``out[n, e, l] = sum_i w[e, i] r[n, i, l]`` for ``r`` of shape ``(N, C, L)``."""
    if r.shape[2] >= MATMUL_MIN_POSITIONS_FORWARD:
        return torch.matmul(w, r)
    return F.conv2d(r.unsqueeze(-1), w[:, :, None, None]).squeeze(-1)


def _mix_backward(grad: torch.Tensor, r: torch.Tensor, w: torch.Tensor,
                  need_r: bool, need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of :func:`_mix`: ``w^T grad`` and ``sum_{n,l} grad r^T``. On small maps one 1x1
    conv backward (one GEMM each; oneDNN/cuDNN contract over N and L without a transposed copy);
    on large ones (:data:`MATMUL_MIN_POSITIONS`) batched matmuls, the weight's summed over N."""
    if r.shape[2] >= MATMUL_MIN_POSITIONS:
        return (torch.matmul(w.t(), grad) if need_r else None,
                torch.matmul(grad, r.transpose(1, 2)).sum(0) if need_w else None)
    grad_r, grad_w, _ = torch.ops.aten.convolution_backward(
        grad.unsqueeze(-1), r.unsqueeze(-1), w[:, :, None, None], None, [1, 1], [0, 0], [1, 1],
        False, [0, 0], 1, [need_r, need_w, False])
    return (grad_r.squeeze(-1) if grad_r is not None else None,
            grad_w.view(w.shape) if grad_w is not None else None)


def _interneurons(i_ie: torch.Tensor, mode: InhibitoryMode, theta_i: float) -> torch.Tensor:
    """r_I (Eq. 11) as a fresh contiguous tensor: saved for the backward pass without keeping the
    whole projection output (and its n_E excitatory channels) alive."""
    if mode == "identity":
        return i_ie.contiguous()
    if mode == "floor":
        return torch.relu(i_ie).div_(theta_i).floor_()
    raise ValueError(f"unknown inhibitory mode {mode!r}; use 'identity' or 'floor'")


def _compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


def _stabilise_(i_div: torch.Tensor, mode: StabilisationMode, eps: float) -> None:
    """Stab() of §5.1 in place on ``(N, n_E, L)``: the values of ``stabilise_adaptive`` or
    ``stabilise_fixed_eps``. The gradient is the identity (STE), so nothing needs saving."""
    if mode == "fixed-eps":
        i_div.add_(eps)
        return
    if mode != "adaptive":
        raise ValueError(f"unknown stabilisation {mode!r}; use 'adaptive' or 'fixed-eps'")
    if i_div.device.type == "cpu" and not _compiling() and bool(i_div.amin() > 0):
        # Exact zeros are rare (none at all in VGG-8 at init): on CPU one read pass to rule them
        # out saves three. On an accelerator the test would cost a host sync per layer, and
        # under torch.compile the data-dependent branch would break the graph. The divisor is
        # non-negative, so a positive minimum means no zero; a minimum reduction is 4-5x
        # faster than ``all()`` on CPU (which converts every element to bool first). Where it
        # is not positive the replacement below runs, which leaves a zero-free divisor as is.
        return
    zero = i_div == 0
    i_div.masked_fill_(zero, math.inf)  # an all-zero row keeps +inf: I_int = b_E there
    row_min = i_div.amin(dim=(1, 2), keepdim=True)
    i_div.copy_(torch.where(zero, row_min, i_div))


class _EIIntegrate(torch.autograd.Function):
    """Eqs. 11-14 from the fused projection ``both = [I_EE | I_IE]`` (channels), hand-derived.

    Forward: one point-wise product with ``[-W_EI ; W_EI diag(g_I)]`` gives ``[-I_sub | I_div]``
    (Eqs. 12-13 share W_EI), and the rest runs in place in that buffer::

        D = Stab(I_div),   q = (I_EE - I_sub) / D,   I_int = g_E q + b_E

    Backward, for the loss gradient ``g`` of I_int and ``a = g g_E / D``::

        dL/db_E = sum g          dL/dg_E = sum g q        dL/dI_EE = a
        dL/dI_sub = -a           dL/dI_div = dL/dD = -g g_E (I_EE - I_sub) / D^2 = -a q

    (Stab is straight-through, §5.1). With ``G = [a q | a]``, the gradients of the point-wise
    product are one GEMM each over that concatenation: ``dL/dr_I = -W_cat^T G`` and
    ``dL/dW_cat = -G r_I^T`` for ``W_cat = [W_EI diag(g_I) ; W_EI]``, split back into
    ``dL/dW_EI = dW_sub + dW_div diag(g_I)`` and ``dL/dg_I = sum_e dW_div * W_EI``. The floor
    interneurons are straight-through as well, so ``dL/dI_IE = dL/dr_I``.

    Saved: r_I and the buffer ``[q | g_E / D]``, which the backward pass turns into G in place (a
    full-size allocation less per layer; a second backward through the node therefore fails
    autograd's version check rather than read clobbered values). Under torch.compile, which
    cannot trace ``out=`` into a strided view, all in-place writes go through tensor methods; on
    CPU in eager mode two of them write into buffer slices with ``out=``, each saving a
    full-size pass (``g_E / D``, and the gradient of ``both`` on the matmul path).
    """

    @staticmethod
    def forward(ctx, both: torch.Tensor, w_ei: torch.Tensor, gain_i: torch.Tensor,
                gain_e: torch.Tensor, bias: torch.Tensor, stabilisation: StabilisationMode,
                eps: float, inhibitory: InhibitoryMode, theta_i: float) -> torch.Tensor:
        n_e = w_ei.shape[0]
        both3 = _by_position(both)
        r_i = _interneurons(both3[:, n_e:], inhibitory, theta_i)
        mixed = _mix(torch.cat([-w_ei, w_ei * gain_i]), r_i)  # [-I_sub | I_div]
        num, div = mixed[:, :n_e], mixed[:, n_e:]
        if not _compiling() and _kernels.usable(mixed, both3, gain_e, bias):
            # the element-wise steps below in one compiled pass (the values of the torch path)
            if stabilisation != "fixed-eps":
                _stabilise_(div, stabilisation, eps)
            out = _kernels.integrate_forward(both3, mixed, gain_e, bias,
                                             eps if stabilisation == "fixed-eps" else 0.0)
            ctx.save_for_backward(r_i, mixed, w_ei, gain_i)
            return out.view(both.shape[0], n_e, *both.shape[2:])
        num.add_(both3[:, :n_e])  # I_EE - I_sub
        _stabilise_(div, stabilisation, eps)
        # q = (I_EE - I_sub) / D and g_E / D: an all-zero row (D = +inf) gives 0, I_int = b_E
        q = num.div_(div)
        g_e = channel_view(gain_e, 3)
        if _compiling() or div.device.type != "cpu":
            div.reciprocal_().mul_(g_e)
        else:  # one pass instead of two (out= into the buffer's slice: eager only)
            torch.div(g_e, div, out=div)
        ctx.save_for_backward(r_i, mixed, w_ei, gain_i)
        out = torch.addcmul(channel_view(bias, 3), q, g_e)
        return out.view(both.shape[0], n_e, *both.shape[2:])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        r_i, mixed, w_ei, gain_i = ctx.saved_tensors
        n_e = w_ei.shape[0]
        need_both, need_w, need_gi, need_ge, need_b = ctx.needs_input_grad[:5]
        g = _by_position(grad)
        # The weight blocks in G's order, negated so the input gradient comes out with its sign.
        w_cat = torch.cat([w_ei * gain_i, w_ei]).neg_()
        need_grad_w = need_w or need_gi
        if not _compiling() and _kernels.usable(mixed, g):
            grad_both, grad_w_cat, grad_bias, grad_gain_e = _integrate_backward_compiled(
                g, mixed, r_i, w_cat, need_both, need_grad_w)
            grad_bias = grad_bias if need_b else None
            grad_gain_e = grad_gain_e if need_ge else None
            return (*_integrate_weight_grads(grad_both, grad_w_cat, grad, w_ei, gain_i, need_w,
                                             need_gi), grad_gain_e, grad_bias,
                    None, None, None, None)
        spread = (0, 2)  # every axis but the channel
        grad_bias = g.sum(spread) if need_b else None
        q, ge_over_d = mixed[:, :n_e], mixed[:, n_e:]
        # g q in place (no temporary), summed for g_E, then times g_E / D: a q
        gq = q.mul_(g)
        grad_gain_e = gq.sum(spread) if need_ge else None
        gq.mul_(ge_over_d)
        if (need_both and r_i.shape[2] >= MATMUL_MIN_POSITIONS and grad.device.type == "cpu"
                and not _compiling()):
            # [a | grad_r] written in place, not concatenated after: on CPU the concatenation
            # is a full-size copy (VGG-8's 16x16 layer: 11.8 -> 9.9 ms for this backward pass)
            grad_both = _integrate_grad_both(g, ge_over_d, gq, r_i, w_cat, n_e)
            a = grad_both[:, :n_e]
            r_t = r_i.transpose(1, 2)
            grad_w_cat = (torch.cat([torch.matmul(gq, r_t).sum(0), torch.matmul(a, r_t).sum(0)])
                          if need_grad_w else None)
        else:
            a = ge_over_d.mul_(g)  # the buffer is now G = [a q | a]
            grad_r, grad_w_cat = _mix_backward(mixed, r_i, w_cat, need_both, need_grad_w)
            grad_both = torch.cat([a, grad_r], 1) if need_both else None
        return (*_integrate_weight_grads(grad_both, grad_w_cat, grad, w_ei, gain_i, need_w,
                                         need_gi), grad_gain_e, grad_bias, None, None, None, None)


def _integrate_weight_grads(grad_both: torch.Tensor | None, grad_w_cat: torch.Tensor | None,
                            grad: torch.Tensor, w_ei: torch.Tensor, gain_i: torch.Tensor,
                            need_w: bool, need_gi: bool):
    """``(dL/dboth, dL/dW_EI, dL/dg_I)`` from the gradient of ``W_cat = [W_EI diag(g_I) ;
    W_EI]`` (negated): ``dW_sub + dW_div diag(g_I)`` and ``sum_e dW_div * W_EI``."""
    n_e = w_ei.shape[0]
    grad_w_ei = grad_gain_i = None
    if grad_w_cat is not None:
        dw_div, dw_sub = grad_w_cat[:n_e], grad_w_cat[n_e:]
        if need_w:
            grad_w_ei = torch.addcmul(dw_sub, dw_div, gain_i).neg_()
        if need_gi:
            grad_gain_i = (dw_div * w_ei).sum(0).neg_()
    if grad_both is not None:
        grad_both = grad_both.view(grad.shape[0], -1, *grad.shape[2:])
    return grad_both, grad_w_ei, grad_gain_i


def _integrate_backward_compiled(g: torch.Tensor, mixed: torch.Tensor, r_i: torch.Tensor,
                                 w_cat: torch.Tensor, need_both: bool, need_grad_w: bool):
    """:meth:`_EIIntegrate.backward` on CPU with its element-wise work in one compiled pass
    (:func:`_kernels.integrate_backward`): ``a`` straight into the projection's gradient, the
    buffer turned into ``G = [a q | a]``, then the point-wise product's gradients from G (one
    batched matmul each on large maps, one 1x1 convolution backward on small ones)."""
    n, n_e, positions = g.shape
    grad_both, grad_bias, grad_gain_e = _kernels.integrate_backward(g, mixed, r_i.shape[1])
    grad_r = grad_both[:, n_e:]
    grad_w_cat = None
    if positions >= MATMUL_MIN_POSITIONS:
        if need_both:
            torch.bmm(w_cat.t().expand(n, *w_cat.t().shape), mixed, out=grad_r)
        if need_grad_w:
            grad_w_cat = torch.matmul(mixed, r_i.transpose(1, 2)).sum(0)
    else:
        conv_grad_r, grad_w_cat = _mix_backward(mixed, r_i, w_cat, need_both, need_grad_w)
        if conv_grad_r is not None:
            grad_r.copy_(conv_grad_r)
    return (grad_both if need_both else None), grad_w_cat, grad_bias, grad_gain_e


def _integrate_grad_both(g: torch.Tensor, ge_over_d: torch.Tensor, aq: torch.Tensor,
                         r_i: torch.Tensor, w_cat: torch.Tensor, n_e: int) -> torch.Tensor:
    """``[a | W_cat^T [a q | a]]`` for ``a = g g_E / D``, written into one new ``(N, n_E + n_I,
    L)`` tensor: ``a`` by the product itself, the input gradient of the point-wise mix by two
    batched matmuls accumulating into its slice (the :func:`_mix_backward` product, split at
    the block boundary)."""
    n, _, positions = g.shape
    n_i = r_i.shape[1]
    grad_both = g.new_empty(n, n_e + n_i, positions)
    a = torch.mul(ge_over_d, g, out=grad_both[:, :n_e])
    w_t = w_cat.t()
    grad_r = grad_both[:, n_e:]
    torch.bmm(w_t[:, :n_e].expand(n, n_i, n_e), aq, out=grad_r)
    grad_r.baddbmm_(w_t[:, n_e:].expand(n, n_i, n_e), a)
    return grad_both


class _EIReadout(torch.autograd.Function):
    """Output layer ``o = I_EE - W_EI r_I`` from ``both``; gradients ``[g | -W_EI^T g]`` and
    ``-g r_I^T`` as one tensor and one GEMM."""

    @staticmethod
    def forward(ctx, both: torch.Tensor, w_ei: torch.Tensor, inhibitory: InhibitoryMode,
                theta_i: float) -> torch.Tensor:
        n_e = w_ei.shape[0]
        both3 = _by_position(both)
        r_i = _interneurons(both3[:, n_e:], inhibitory, theta_i)
        out = _mix(w_ei, r_i)
        torch.sub(both3[:, :n_e], out, out=out)
        ctx.save_for_backward(r_i, w_ei)
        return out.view(both.shape[0], n_e, *both.shape[2:])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        r_i, w_ei = ctx.saved_tensors
        need_both, need_w = ctx.needs_input_grad[:2]
        g = _by_position(grad).contiguous()
        grad_r, grad_w = _mix_backward(g, r_i, w_ei.neg(), need_both, need_w)
        grad_both = None
        if need_both:
            grad_both = torch.cat([g, grad_r], 1).view(grad.shape[0], -1, *grad.shape[2:])
        return grad_both, (grad_w.neg_() if grad_w is not None else None), None, None


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def _apply(function: type[torch.autograd.Function], both: torch.Tensor, w_ei: torch.Tensor,
           *rest) -> torch.Tensor:
    """Run a fused circuit; under autocast, in the parameters' precision with autocast off.

    The division by Stab(I_div) is where bfloat16 hurts (the reference composition leaves it in
    float32 too, since the float32 g_E promotes it). The projection feeding ``both`` stays in
    bfloat16; the circuit's point-wise products, a few percent of the step, do not.
    """
    device_type = both.device.type
    if not _autocast_enabled(device_type):
        return function.apply(both, w_ei, *rest)
    with torch.autocast(device_type, enabled=False):
        return function.apply(both.to(torch.promote_types(both.dtype, w_ei.dtype)), w_ei, *rest)


def ei_integrate_fused(
    both: torch.Tensor,
    w_ei: torch.Tensor,
    gain_i: torch.Tensor,
    gain_e: torch.Tensor,
    bias: torch.Tensor,
    stabilisation: StabilisationMode = "adaptive",
    eps: float = 1e-3,
    inhibitory: InhibitoryMode = "identity",
    theta_i: float = 1.0,
) -> torch.Tensor:
    """``ei_integrate`` of ``inhibitory_response`` of the I_IE channels, in one autograd node.

    ``both`` is the fused projection ``[I_EE | I_IE]`` (Eqs. 9-10) along the channel axis,
    ``(N, n_E + n_I)`` or ``(N, n_E + n_I, H, W)``; ``w_ei`` is ``(n_E, n_I)`` (already through
    ``scale_grad`` where E-I Prop applies); gains and bias are per-channel vectors.
    ``stabilisation`` is ``adaptive`` (§5.1) or ``fixed-eps`` (divisor + ``eps``).
    """
    return _apply(_EIIntegrate, both, w_ei, gain_i, gain_e, bias, stabilisation, eps, inhibitory,
                  theta_i)


def ei_readout_fused(both: torch.Tensor, w_ei: torch.Tensor,
                     inhibitory: InhibitoryMode = "identity", theta_i: float = 1.0) -> torch.Tensor:
    """``ei_readout`` of ``inhibitory_response`` of the I_IE channels, in one autograd node."""
    return _apply(_EIReadout, both, w_ei, inhibitory, theta_i)


# --------------------------------------------------------------------------- the projection
#: At most this many output positions per sample (H*W) the weight gradient of a 3x3 projection
#: runs as one GEMM over unfolded inputs instead of oneDNN's convolution backward, which is 2-3x
#: slower on such maps (VGG-8's last conv, 2x2 maps, 512 -> 640 channels, one thread: 37 ms ->
#: 14 ms per step) and still slower on 4x4 maps (its fourth conv, 256 -> 640 channels: 27.5 ->
#: 24.5 ms; the whole step 6.7 ms shorter), while on 8x8 maps the GEMM loses (20.9 -> 31 ms).
#: CPU only; cuDNN has no such gap.
UNFOLD_MAX_POSITIONS = 16


class _SmallMapConv2d(torch.autograd.Function):
    """``F.conv2d`` whose weight gradient is ``grad (C_out, N*L) @ unfold(x)^T (N*L, C*k*k)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int,
                padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding)
        return F.conv2d(x, weight, stride=stride, padding=padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        stride, padding = ctx.geometry
        need_x, need_w = ctx.needs_input_grad[:2]
        grad_x = grad_w = None
        if need_x:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1,
                [True, False, False])[0]
        if need_w:
            cols = F.unfold(x, weight.shape[2:], padding=padding, stride=stride)  # (N, Ckk, L)
            c_out, n = weight.shape[0], x.shape[0]
            g = grad.reshape(n, c_out, -1).transpose(0, 1).reshape(c_out, -1)
            grad_w = (g @ cols.transpose(0, 1).reshape(cols.shape[1], -1).t()).view(weight.shape)
        return grad_x, grad_w, None, None


def conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1,
           padding: int = 0) -> torch.Tensor:
    """``F.conv2d`` (no bias, no dilation, one group): the E-I layers' projection (Eqs. 9-10).

    On CPU, for output maps of at most :data:`UNFOLD_MAX_POSITIONS` positions, the weight
    gradient runs as one GEMM (:class:`_SmallMapConv2d`); the values are the same up to
    summation order."""
    h = (x.shape[2] + 2 * padding - weight.shape[2]) // stride + 1
    w = (x.shape[3] + 2 * padding - weight.shape[3]) // stride + 1
    if (x.device.type != "cpu" or h * w > UNFOLD_MAX_POSITIONS or _compiling()
            or not weight.requires_grad or x.dtype != weight.dtype):
        return F.conv2d(x, weight, stride=stride, padding=padding)
    return _SmallMapConv2d.apply(x, weight, stride, padding)
