"""Quantization-aware training for DYNAP-SE2: train through the weights the chip will hold.

Export quantizes every synapse to its core's codebook (``targets.dynapse2.quantize``): 16 levels
(15 non-zero) from 4 base weights per core, each dendrite with its own scale, g_E folded into an
E neuron's AMPA and GABA weights, a synapse that rounds to 0 dropped. A model trained in float
loses accuracy to that rounding; QAT lets it adapt. Once per epoch (:func:`attach_quantizers`)
the model is lowered, placed and quantized exactly as the exporter does it (``place``,
``quantize_graph``, whose ``fit_core`` fits each core's codebook and dendrite scales). The fitted
codebooks then stay fixed for the epoch, and every forward pass rounds the current weights to
their core's nearest scaled level (the exporter's rule, ties to the smaller level) with a
straight-through gradient (:class:`LayerQuantizer`).

The circuit run on those weights is the one the quantized graph computes (Eqs. 9-14 with g_E
folded, so g_E = 1 in the division):

    I_EE = Q_ampa(g_E W_EE) x        I_IE = Q_ampa(W_IE) x        r_I = response(I_IE)
    I_sub = Q_gaba(g_E W_EI) r_I     I_div = Q_shunt(W_EI g_I) r_I
    I_int = (I_EE - I_sub) / Stab(I_div) + b_E           (readout: o = Q(W_EE) x - Q(W_EI) r_I)

Gradients reach W_EE, W_IE, W_EI, g_E and g_I through the products inside Q (W_EI with its 1/d
scale, §5.2). Dense E-I layers only (the hardware MLP); a conv layer raises. The circuit is
``eideploy.nn.functional``'s: ``inhibitory_response``, then ``ei_integrate_currents`` /
``ei_readout_currents``, the forms of ``ei_integrate`` / ``ei_readout`` that take the currents
(here the two inhibitory paths no longer share one W_EI once quantized).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..graph.lowering import lower
from ..nn import EILayer, EILinear
from ..nn import functional as EF
from ..targets.dynapse2.place import place
from ..targets.dynapse2.quantize import core_levels, quantize_graph
from ..targets.dynapse2.target import Target

__all__ = ["LayerQuantizer", "attach_quantizers", "detach_quantizers", "fake_quantize",
           "quantized"]


def fake_quantize(w: torch.Tensor, levels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Each row's weights rounded to the nearest of that row's ``scale * levels``; the gradient
    passes straight through (``w + (q - w).detach()``).

    ``w`` (n, d) >= 0; ``levels`` (n, L) ascending with 0 first; ``scale`` (n, 1) > 0. A weight at
    a midpoint goes to the smaller level, as ``eideploy.quant.quantize`` rounds.
    """
    u = (w.detach() / scale).contiguous()
    mids = 0.5 * (levels[:, 1:] + levels[:, :-1])
    index = torch.searchsorted(mids.contiguous(), u, right=False)
    q = levels.gather(1, index) * scale
    return w + (q - w).detach()


class _Codes:
    """Per-neuron rounding tables of one population: its core's levels and dendrite scales."""

    def __init__(self, levels: np.ndarray, scales: dict[str, np.ndarray], device: torch.device,
                 dtype: torch.dtype) -> None:
        self.levels = torch.as_tensor(levels, dtype=dtype, device=device)
        self.scales = {d: torch.as_tensor(s, dtype=dtype, device=device).clamp(min=1e-12)
                       for d, s in scales.items()}

    def __call__(self, w: torch.Tensor, dendrite: str) -> torch.Tensor:
        return fake_quantize(w, self.levels, self.scales[dendrite])


class LayerQuantizer:
    """The forward pass of one dense E-I layer on fake-quantized weights (module doc).

    Installed as ``layer.quantizer``; ``exc`` holds the E (or readout) population's tables,
    ``inh`` the interneurons'. ``dendrites`` maps projection kinds to dendrites.
    """

    def __init__(self, exc: _Codes, inh: _Codes, dendrites: dict[str, str]) -> None:
        self.exc, self.inh, self.dendrite = exc, inh, dendrites

    def __call__(self, layer: EILayer, x: torch.Tensor) -> torch.Tensor:
        opts = layer.options
        w_ee, w_ie, w_ei = layer.effective_weights()
        w_ei = EF.scale_grad(w_ei, opts.grad_scale(layer.fan_in))
        ampa, gaba, shunt = (self.dendrite[k] for k in ("exc", "sub", "div"))
        if layer.readout:
            a_exc, a_sub = self.exc(w_ee, ampa), self.exc(w_ei, gaba)
        else:
            g_e = layer.gain_e[:, None]
            a_exc, a_sub = self.exc(g_e * w_ee, ampa), self.exc(g_e * w_ei, gaba)
            a_div = self.exc(w_ei * layer.gain_i[None, :], shunt)
        both = F.linear(x, torch.cat([a_exc, self.inh(w_ie, ampa)]))
        i_ee, i_ie = both[:, :layer.n_e], both[:, layer.n_e:]
        r_i = EF.inhibitory_response(i_ie, opts.inhibitory, opts.theta_i)
        i_sub = F.linear(r_i, a_sub)
        if layer.readout:
            return EF.ei_readout_currents(i_ee, i_sub)
        # g_E is folded into the AMPA and GABA weights (None: no second multiplication)
        stabilise = partial(EF.stabilise, mode=opts.stabilisation, eps=opts.eps)
        return EF.ei_integrate_currents(i_ee, i_sub, F.linear(r_i, a_div), None, layer.bias,
                                        stabilise)


def _tables(qgraph, placement, population: str, dendrites: list[str]
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per neuron of ``population``: its core's sorted distinct levels (padded with the top
    level to a common length) and its core's scale of every dendrite, ``(n, 1)`` each."""
    keys = [tuple(int(v) for v in loc[:2]) for loc in placement.location[population]]
    cores = sorted(set(keys))
    uniq = {k: np.unique(core_levels(qgraph.codebooks[k])) for k in cores}
    width = max(u.size for u in uniq.values())
    padded = {k: np.pad(u, (0, width - u.size), mode="edge") for k, u in uniq.items()}
    levels = np.stack([padded[k] for k in keys])
    scales = {d: np.array([[qgraph.dendrite_scales.get(k, {}).get(d, 1.0)] for k in keys])
              for d in dendrites}
    return levels, scales


@torch.no_grad()
def attach_quantizers(model: nn.Module, target: Target, *, seed: int = 0) -> dict[str, float]:
    """Fit the exporter's per-core codebooks on the model's current weights and install a
    :class:`LayerQuantizer` on every E-I layer. Returns the quantization error (relative RMSE
    over all synapses, and per dendrite)."""
    net = getattr(model, "module", model)
    detach_quantizers(net)
    graph = lower(net)
    placement = place(graph, target)
    qgraph = quantize_graph(graph, placement, target, seed=seed)
    dendrites = {kind: target.dendrite(kind) for kind in ("exc", "sub", "div")}
    names = sorted(set(dendrites.values()))
    for name, layer in net.named_modules():
        if not isinstance(layer, EILayer):
            continue
        if not isinstance(layer, EILinear):
            raise ValueError(f"QAT: layer {name} is a {type(layer).__name__}; quantization-aware "
                             "training runs dense E-I layers (the hardware MLP)")
        ref = layer.weight_ee
        exc = f"{name}.{'readout' if layer.readout else 'exc'}"
        codes = [_Codes(*_tables(qgraph, placement, pop, names), ref.device, ref.dtype)
                 for pop in (exc, f"{name}.inh")]
        layer.quantizer = LayerQuantizer(codes[0], codes[1], dendrites)
    stats = qgraph.stats
    return {"relative_rmse": float(stats["total"]["relative_rmse"]),
            **{f"relative_rmse_{d}": float(v["relative_rmse"])
               for d, v in stats.get("dendrites", {}).items()}}


def detach_quantizers(model: nn.Module) -> None:
    """Back to the float circuit: remove every layer's quantizer."""
    for layer in model.modules():
        if isinstance(layer, EILayer):
            layer.quantizer = None


def quantized(model: nn.Module) -> bool:
    return any(isinstance(m, EILayer) and m.quantizer is not None for m in model.modules())

