"""Torch modules around the pure E-I circuit of ``functional.py``.

``EILinear`` and ``EIConv2d`` differ only in the shape of their excitatory/inhibitory weights and in
how those weights project the input (matmul vs convolution); the E-I integration, the readout, the
E-I Init statistics and the input checks are written once in ``EILayer``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import functional as EF
from .options import EIOptions

__all__ = ["EILayer", "EILinear", "EIConv2d", "LIF", "name_ei_layers", "inhibitory_count"]


def inhibitory_count(n_e: int, ei_ratio: int) -> int:
    """``n_I = floor(n_E / ei_ratio)``, at least one interneuron (spec §1)."""
    return max(1, n_e // ei_ratio)


class EILayer(nn.Module):
    """One DeepEISNN layer: E and I populations fed by the same input, lateral inhibition onto E.

    Parameters (spec §3): ``weight_ee`` (n_E, *k), ``weight_ie`` (n_I, *k),
    ``weight_ei`` (n_E, n_I), ``gain_i`` (n_I,), ``gain_e`` (n_E,), ``bias`` (n_E,). All but
    ``bias`` are non-negative. The buffer ``initialised`` records that E-I Init has run; it is
    saved with the weights so a loaded checkpoint is never re-initialised.

    With ``readout=True`` the layer is the network's output: ``I_EE - I_sub`` with no division;
    its ``gain_i``, ``gain_e`` and ``bias`` exist (as in the reference) but receive no gradient.

    Budgeted connectivity (hardware models, ``connectivity.py``): :meth:`set_connectivity`
    registers 0/1 buffers ``mask_ee`` (n_E, *k), ``mask_ie`` (n_I, *k) and ``mask_ei``
    (n_E, n_I), saved in the state_dict. :meth:`effective_weights` (the masked weights) is what
    the forward pass and lowering use, and ``fan_in`` becomes the actual fan-in K_in (E-I Init's
    lambda and g_I, and the 1/d gradient scale of W_EI).
    """

    def __init__(self, n_e: int, kernel_shape: tuple[int, ...], fan_in: int,
                 options: EIOptions | None = None, readout: bool = False,
                 n_i: int | None = None) -> None:
        super().__init__()
        self.options = options or EIOptions()
        self.n_e = int(n_e)
        self.n_i = (int(n_i) if n_i is not None
                    else inhibitory_count(self.n_e, self.options.ei_ratio))
        self.fan_in = int(fan_in)
        self.readout = readout
        self.layer_name = type(self).__name__
        self.weight_ee = nn.Parameter(torch.zeros(self.n_e, *kernel_shape))
        self.weight_ie = nn.Parameter(torch.zeros(self.n_i, *kernel_shape))
        self.weight_ei = nn.Parameter(torch.full((self.n_e, self.n_i), 1.0 / self.n_i))
        self.gain_i = nn.Parameter(torch.ones(self.n_i))
        self.gain_e = nn.Parameter(torch.ones(self.n_e))
        self.bias = nn.Parameter(torch.zeros(self.n_e))
        self.dense_fan_in = int(fan_in)
        for name in ("mask_ee", "mask_ie", "mask_ei"):
            self.register_buffer(name, None)
        # Set by eideploy.train.qat during quantization-aware training: a callable
        # ``(layer, x) -> output`` that runs the circuit on fake-quantized weights.
        self.quantizer = None
        if self.options.bias == "none":
            self.bias.requires_grad_(False)  # no per-neuron DC on the chip: b_E stays 0
        if readout:
            # Dead in the readout (spec §3): kept for the parameter count and checkpoints, but
            # frozen so optimizers and DistributedDataParallel do not wait for their gradients.
            for p in (self.gain_i, self.gain_e, self.bias):
                p.requires_grad_(False)
        self.register_buffer("initialised", torch.tensor(False))
        self._init_rng: np.random.Generator | None = None
        self._ready = False  # host-side mirror of `initialised`: no device sync per forward
        self.init_stats: dict[str, float] | None = None

    @property
    def initialising(self) -> bool:
        """True while ``ei_init`` runs its pass (it hands the layer its generator meanwhile)."""
        return self._init_rng is not None

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._ready = False  # re-read the loaded `initialised` buffer on the next forward
        self._update_fan_in()

    # ---- connectivity
    @torch.no_grad()
    def set_connectivity(self, mask_ee: torch.Tensor | np.ndarray,
                         mask_ie: torch.Tensor | np.ndarray,
                         mask_ei: torch.Tensor | np.ndarray) -> None:
        """Keep only the synapses where the 0/1 masks are 1 (shapes of W_EE, W_IE, W_EI)."""
        for name, value, ref in (("mask_ee", mask_ee, self.weight_ee),
                                 ("mask_ie", mask_ie, self.weight_ie),
                                 ("mask_ei", mask_ei, self.weight_ei)):
            mask = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
            if tuple(mask.shape) != tuple(ref.shape):
                raise ValueError(f"layer {self.layer_name}: {name} has shape {tuple(mask.shape)},"
                                 f" its weight {tuple(ref.shape)}")
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError(f"layer {self.layer_name}: {name} must hold only 0 and 1")
            setattr(self, name, mask.clone())
        self._update_fan_in()

    @property
    def masked(self) -> bool:
        return self.mask_ee is not None

    def _update_fan_in(self) -> None:
        if self.mask_ee is not None:
            per_neuron = self.mask_ee.reshape(self.n_e, -1).sum(1)
            self.fan_in = max(1, int(round(float(per_neuron.mean()))))
        else:
            self.fan_in = self.dense_fan_in

    def effective_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W_EE, W_IE, W_EI)`` with absent synapses at 0: what the circuit and lowering use."""
        if self.mask_ee is None:
            return self.weight_ee, self.weight_ie, self.weight_ei
        return (self.weight_ee * self.mask_ee, self.weight_ie * self.mask_ie,
                self.weight_ei * self.mask_ei)

    # ---- what subclasses define
    def project(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    # ---- the circuit
    def constrained_parameters(self) -> list[nn.Parameter]:
        """Parameters projected to >= 0 (Dale's law): every one but ``bias``."""
        return [self.weight_ee, self.weight_ie, self.weight_ei, self.gain_i, self.gain_e]

    def currents(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. 9-10: ``I_EE = W_EE * x`` and ``I_IE = W_IE * x`` in one fused projection."""
        w_ee, w_ie, _ = self.effective_weights()
        both = self.project(x, torch.cat([w_ee, w_ie]))
        return both[:, : self.n_e], both[:, self.n_e:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self._init_rng is not None and not self._ready:
            self._initialise_from(x, self._init_rng)
        elif not self._ready:
            if not bool(self.initialised):
                raise RuntimeError(
                    f"layer {self.layer_name} has not been initialised: call "
                    "eideploy.nn.ei_init(model, batch) once before training, or load a checkpoint")
            self._ready = True
        if self.quantizer is not None:
            return self.quantizer(self, x)
        # Eqs. 9-10 as one projection; the fused functions take [I_EE | I_IE] whole, so the
        # backward pass hands the projection one gradient tensor (see ``currents`` and
        # ``EF.ei_integrate`` for the same circuit written op by op).
        w_ee, w_ie, w_ei = self.effective_weights()
        both = self.project(x, torch.cat([w_ee, w_ie]))
        opts = self.options
        w_ei = EF.scale_grad(w_ei, opts.grad_scale(self.fan_in))
        if self.readout:
            return EF.ei_readout_fused(both, w_ei, opts.inhibitory, opts.theta_i)
        return EF.ei_integrate_fused(both, w_ei, self.gain_i, self.gain_e, self.bias,
                                     opts.stabilisation, opts.eps, opts.inhibitory, opts.theta_i)

    # ---- E-I Init (spec §4.2)
    @torch.no_grad()
    def _initialise_from(self, x: torch.Tensor, rng: np.random.Generator) -> None:
        name = self.layer_name
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"ei_init: the input of layer {name} contains NaN or infinite values; "
                             "give ei_init a batch of finite inputs")
        x64 = x.detach().double()
        if float(x64.min()) < 0:
            raise ValueError(
                f"ei_init: the input of layer {name} has negative values "
                f"(min {float(x64.min()):.4g}); E-I Init needs inputs >= 0 with a positive mean "
                "(pixels in [0, 1], spike counts): do not mean/std-normalise the data")
        m1 = float(x64.mean())
        m2 = float((x64 * x64).mean())
        v = float(x64.var(dim=0, unbiased=x64.shape[0] > 1).mean())
        if m1 <= 0:
            raise ValueError(f"ei_init: the input of layer {name} is all zero (mean 0); E-I Init "
                             "needs E[x] > 0: use a batch of real samples, or a lower threshold")
        if v <= 0:
            raise ValueError(f"ei_init: the input of layer {name} does not vary across the batch; "
                             "give ei_init a batch of several different samples")
        d = self.fan_in
        beta = math.sqrt(v / (d * (m2 + v)))  # 1/lambda: std(I_EE) = std(x), App. D.4
        init = self.options.init
        for weight in (self.weight_ee, self.weight_ie):
            shape = tuple(weight.shape)
            if init == "ei":
                drawn = rng.exponential(beta, size=shape)
            else:
                drawn = rng.normal(0.0, math.sqrt(2.0 / d), size=shape)  # Kaiming normal, fan-in
                if init == "kaiming-clamped":
                    drawn = np.maximum(drawn, 0.0)
            weight.copy_(torch.from_numpy(drawn.astype(np.float32)))
        if self.mask_ei is None:
            self.weight_ei.fill_(1.0 / self.n_i)
        else:
            # Budgeted (hardware) layers: W_EI = mask / K_inh, each row summing to 1 over the
            # interneurons that E neuron hears (Eqs. 16-18: E[I_sub] = E[I_EE]). Their floor
            # interneurons count spikes, r_I ~ I_IE / theta_I, so there the rows sum to
            # theta_I, which keeps the balance for any threshold.
            row_sum = self.options.theta_i if self.options.inhibitory == "floor" else 1.0
            self.weight_ee.mul_(self.mask_ee)
            self.weight_ie.mul_(self.mask_ie)
            heard = self.mask_ei.sum(1, keepdim=True).clamp(min=1.0)
            self.weight_ei.copy_(self.mask_ei * (row_sum / heard))
        gain = math.sqrt(m2 + v) / (math.sqrt(d) * m1)  # E[I_div] = std(I_EE), App. D.3
        self.gain_i.fill_(gain)
        self.gain_e.fill_(1.0)
        self.bias.zero_()
        self.initialised.fill_(True)
        self._ready = True
        self.init_stats = {"mean": m1, "mean_sq": m2, "var": v, "fan_in": d, "beta": beta,
                           "gain_i": gain}

    def extra_repr(self) -> str:
        return (f"n_e={self.n_e}, n_i={self.n_i}, fan_in={self.fan_in}, readout={self.readout}, "
                f"init={self.options.init!r}, stabilisation={self.options.stabilisation!r}")


class EILinear(EILayer):
    """E-I fully connected layer: ``d = in_features``."""

    def __init__(self, in_features: int, out_features: int, options: EIOptions | None = None,
                 readout: bool = False, n_i: int | None = None) -> None:
        if in_features < 1 or out_features < 1:
            raise ValueError(f"EILinear needs positive sizes, got {in_features} -> {out_features}")
        super().__init__(out_features, (in_features,), in_features, options, readout, n_i)
        self.in_features = in_features

    def project(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight)

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"layer {self.layer_name} (EILinear) expects input of shape "
                             f"(T*B, {self.in_features}); got {tuple(x.shape)}")


class EIConv2d(EILayer):
    """E-I convolution: ``d = C_in * k * k``; W_EI acts point-wise (1x1) over channels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int | None = None, options: EIOptions | None = None,
                 n_i: int | None = None) -> None:
        if in_channels < 1 or out_channels < 1 or kernel_size < 1 or stride < 1:
            raise ValueError("EIConv2d needs positive channels, kernel size and stride, got "
                             f"{in_channels} -> {out_channels}, k={kernel_size}, s={stride}")
        super().__init__(out_channels, (in_channels, kernel_size, kernel_size),
                         in_channels * kernel_size * kernel_size, options, False, n_i)
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2 if padding is None else padding

    def project(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return EF.conv2d(x, weight, self.stride, self.padding)

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"layer {self.layer_name} (EIConv2d) expects input of shape "
                             f"(T*B, {self.in_channels}, H, W); got {tuple(x.shape)}")


class LIF(nn.Module):
    """Multi-step LIF on time-folded tensors ``(T*B, ...)``; membranes start at 0 each call.

    Starting from zero on every forward is the reference's ``reset_net`` after each batch.
    """

    def __init__(self, T: int, options: EIOptions | None = None) -> None:
        super().__init__()
        if not isinstance(T, int) or T < 1:
            raise ValueError(f"the number of time steps T must be an integer >= 1, got {T!r}")
        self.T = T
        self.params = (options or EIOptions()).lif

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.T:
            raise ValueError(f"LIF expects (T*B, ...) with T={self.T}; got {tuple(x.shape)}")
        seq = x.reshape(self.T, x.shape[0] // self.T, *x.shape[1:])
        return EF.lif_multistep(seq, self.params).reshape(x.shape)

    def forward_repeated(self, x: torch.Tensor) -> torch.Tensor:
        """The LIF of ``(B, ...)`` currents that are the same at every step (a static input's
        stem, ``SpikingNetwork.share_static_stem``): ``(T*B, ...)`` spikes, those of
        ``forward`` on the T copies, which are never made: the steps read one expanded view, and
        autograd sums the gradient over them (on VGG-8's first layer the copy alone cost about
        as much as its LIF)."""
        seq = x.unsqueeze(0).expand(self.T, *x.shape)
        return EF.lif_multistep(seq, self.params).reshape(-1, *x.shape[1:])

    def extra_repr(self) -> str:
        return f"T={self.T}, tau={self.params.tau}, v_threshold={self.params.v_threshold}"


def name_ei_layers(model: nn.Module) -> None:
    """Give every E-I layer its qualified module name, so errors can say which layer failed."""
    for name, module in model.named_modules():
        if isinstance(module, EILayer):
            module.layer_name = name or type(module).__name__
