"""Lowering: a trained torch E-I network becomes an :class:`EIGraph` (DESIGN §1, step 2).

The walk follows ``model.pipeline()``, the same forward order the torch model runs, and turns each
E-I layer into the circuit of spec §3 written as populations and projections:

* ``<layer>.inh`` (role ``inh``): the fast-spiking interneurons, fed by ``<layer>.ie`` (W_IE);
* ``<layer>.exc`` (role ``exc``): the LIF cells, fed by ``<layer>.ee`` (W_EE, AMPA), inhibited
  by ``<layer>.sub`` (W_EI, GABA, Eq. 12) and divided by ``<layer>.div`` (W_EI g_I, SHUNT,
  Eq. 13, g_I folded into the weights: exact, since Eq. 13 is linear in g_I);
* the readout layer gives ``<layer>.readout`` (``o = I_EE - I_sub``, no division, no LIF) with
  its own ``<layer>.inh`` and no ``div`` projection.

Pools and flattens between layers carry no neurons: an AvgPool2d becomes ``attrs["pool"]`` of the
next layer's input projections, and a Flatten makes the next projection ``dense`` over a
``(C, H, W)`` source flattened C-major, as torch's ``Flatten`` does. Convolutions stay
convolutions; :func:`unroll_conv` turns them into explicit synapses for targets that need them.

Hardware-aware networks (``eideploy.networks.hardware``) lower the same way, with their chip
semantics written into the graph: the masked weights (``EILayer.effective_weights``: an absent
synapse is a zero weight, which every later stage drops), the input encoding
(``graph.input["encoding"]``: ``if`` or ``bernoulli``, with its parameters) and the spiking
readout (``graph.readout["mode"] = "spiking"`` with ``theta_out``; the readout population a
non-leaky integrate-and-fire neuron with that threshold). Floor interneurons are the layers'
``options.inhibitory`` as for any network.
Anything without an exact E-I graph form (SEW residual adds, BatchNorm baselines, adaptive pools)
is refused with the module's name, rather than lowered approximately.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import json_plain
from ..networks.base import SpikingNetwork
from ..networks.resnet import BasicBlock
from ..nn import LIF, EIConv2d, EILayer, EILinear, EIOptions
from ..nn.encoding import IF_PHASE
from .ir import EIGraph, Population, Projection

__all__ = ["lower"]


# --------------------------------------------------------------------------- lowering
def lower(model: SpikingNetwork, *, name: str | None = None,
          meta: dict[str, Any] | None = None) -> EIGraph:
    """The E-I graph of an initialised E-I MLP, VGG or CNN (``EIMLP``, ``EIVGG``, ``EICNN``).

    ``name`` defaults to the architecture name; ``meta`` is merged over the provenance recorded
    here (``architecture`` name and kwargs, ``options``). All arrays are float32 copies, so the
    graph shares no memory with the model. Raises ``ValueError`` naming the module for a model the
    graph cannot express exactly (residual adds, BatchNorm, unsupported pools), for layers E-I
    Init never ran on, and for weights that are negative or not finite.
    """
    net = getattr(model, "module", model)  # unwrap DistributedDataParallel
    kind = type(net).__name__
    steps, options = _lowerable_steps(net, kind)
    builder = _Builder(tuple(int(s) for s in net.in_shape), options)
    for index, (qualname, module) in enumerate(steps):
        if isinstance(module, EILayer):
            lif = steps[index + 1][1] if not module.readout else None
            builder.layer(qualname, module, lif)
        elif isinstance(module, nn.AvgPool2d):
            builder.add_pool(qualname, module)
        elif isinstance(module, nn.Flatten):
            builder.flat = True
    readout = builder.readout
    if readout is None:
        raise ValueError(f"lower: {kind} has no readout E-I layer (EILinear with readout=True) "
                         "at the end of its pipeline")
    theta_out = getattr(net, "theta_out", None)
    if theta_out is not None:
        # A non-leaky integrate-and-fire readout: no tau (the compiler requests no leak).
        builder.population(readout).params = {"mode": "spiking", "neuron": "if",
                                              "v_threshold": float(theta_out)}
    provenance: dict[str, Any] = {
        "architecture": {"name": str(getattr(net, "arch_name", kind)),
                         "kwargs": json_plain(getattr(net, "arch_kwargs", {}))},
        "options": json_plain(options.to_dict()),
    }
    provenance.update(json_plain(meta or {}))
    graph = EIGraph(
        name=name if name is not None else str(getattr(net, "arch_name", kind)),
        T=int(net.T),
        populations=builder.populations,
        projections=builder.projections,
        input=_input_record(net),
        readout=({"population": readout, "mode": "current", "classes": int(net.num_classes)}
                 if theta_out is None else
                 {"population": readout, "mode": "spiking", "classes": int(net.num_classes),
                  "theta_out": float(theta_out)}),
        division={"stabilisation": str(options.stabilisation), "eps": float(options.eps)},
        meta=provenance,
    )
    graph.validate()
    return graph


def _lowerable_steps(net: nn.Module, kind: str
                     ) -> tuple[list[tuple[str, nn.Module]], EIOptions]:
    """The network's named steps and E-I options, refused (naming the module) unless it is an
    initialised E-I network of layers, pools and flattens only."""
    for attr in ("pipeline", "in_shape", "num_classes", "T"):
        if not hasattr(net, attr):
            raise ValueError(f"lower: {kind} is not an eideploy SpikingNetwork (no {attr}); "
                             "build it with eideploy.networks.build_network")
    steps = _named_steps(net)
    _check_structure(steps, kind)  # first, so a ResNet is refused for its adds, not its init
    options = getattr(net, "options", None)
    if not isinstance(options, EIOptions):
        raise ValueError(f"lower: {kind} has no E-I options (EIOptions): it is not an E-I "
                         "network; only E-I networks lower to an E-I graph")
    missing = [n for n, m in steps if isinstance(m, EILayer) and not bool(m.initialised)]
    if missing:
        raise ValueError(f"lower: layer(s) {', '.join(missing)} of {kind} are not initialised "
                         "(E-I Init never ran, so their weights are placeholders): run "
                         "eideploy.nn.ei_init(model, batch) or load a trained checkpoint first")
    return steps, options


def _input_record(net: nn.Module) -> dict[str, Any]:
    """``graph.input``: the population and how the host turns intensities into its spikes."""
    encoding = str(getattr(net, "encoding", "direct"))
    record: dict[str, Any] = {"population": "input", "encoding": encoding}
    if encoding == "if":
        record.update(threshold=1.0, phase=float(IF_PHASE))
    elif encoding == "bernoulli":
        record["seed"] = int(getattr(net, "seed", 0))
    return record


def _named_steps(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``pipeline()`` with qualified module names, plain ``Sequential`` containers opened and
    modules that compute nothing (Identity, Dropout(p=0): the reference's no-op) left out.

    Opening containers lets an error name the block at fault (``layer1.0``), not its stage;
    subclasses of Sequential (the baselines' ``ConvBN``) stay whole, as the unit they are.
    """
    names = {id(m): n for n, m in net.named_modules()}
    out: list[tuple[str, nn.Module]] = []

    def visit(module: nn.Module, qualname: str) -> None:
        if type(module) is nn.Sequential:
            for child_name, child in module.named_children():
                visit(child, f"{qualname}.{child_name}" if qualname else child_name)
        elif isinstance(module, nn.Identity) or (isinstance(module, nn.Dropout)
                                                 and module.p == 0.0):
            return
        else:
            out.append((qualname, module))

    for module in net.pipeline():
        visit(module, names.get(id(module), type(module).__name__))
    return out


def _refusal(module: nn.Module) -> str:
    """Why a module has no E-I graph form, in the words a user recognises."""
    if isinstance(module, BasicBlock):
        return ("a SEW residual block: its output adds the shortcut to the spikes (spikes + "
                "shortcut), which no E-I projection kind (exc/sub/div) expresses")
    if any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in module.modules()):
        return ("a BatchNorm unit of the BN-SNN baseline; only E-I layers lower to E-I "
                "populations")
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        return "a plain (signed, non-E-I) weight layer; only E-I layers lower to E-I populations"
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d)):
        return "an adaptive pool; only AvgPool2d with kernel = stride and no padding lowers"
    return "a module the E-I graph has no form for"


def _check_structure(steps: list[tuple[str, nn.Module]], kind: str) -> None:
    """Every step is an E-I layer (each hidden one followed by its LIF), a pool or a flatten."""
    previous: nn.Module | None = None
    for index, (qualname, module) in enumerate(steps):
        if isinstance(module, EILayer):
            if not isinstance(module, (EILinear, EIConv2d)):
                raise ValueError(f"lower: module {qualname} ({type(module).__name__}) is an E-I "
                                 "layer of a kind lowering does not know")
            nxt = steps[index + 1][1] if index + 1 < len(steps) else None
            if module.readout and nxt is not None:
                raise ValueError(f"lower: readout layer {qualname} of {kind} is not the last "
                                 "module of the pipeline")
            if not module.readout and not isinstance(nxt, LIF):
                raise ValueError(f"lower: E-I layer {qualname} of {kind} is not followed by a "
                                 "LIF: its excitatory population needs the spiking neuron")
        elif isinstance(module, LIF):
            if not (isinstance(previous, EILayer) and not previous.readout):
                raise ValueError(f"lower: LIF {qualname} of {kind} does not follow a hidden E-I "
                                 "layer; the graph's neurons belong to E-I layers")
        elif isinstance(module, nn.AvgPool2d):
            _pool_size(qualname, module)
        elif isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise ValueError(f"lower: Flatten {qualname} must flatten dims 1..-1 (C-major "
                                 f"per sample), got start_dim={module.start_dim}, "
                                 f"end_dim={module.end_dim}")
        else:
            raise ValueError(f"lower: cannot lower module {qualname} ({type(module).__name__}) "
                             f"of {kind}: it is {_refusal(module)}")
        previous = module


def _pool_size(qualname: str, module: nn.AvgPool2d) -> int:
    """k of an AvgPool2d(k, k): the only pool the graph's ``attrs["pool"]`` expresses."""
    def single(value: Any) -> int | None:
        if isinstance(value, int):
            return value
        if isinstance(value, (tuple, list)) and len(set(value)) == 1:
            return int(value[0])
        return None

    k, s, p = single(module.kernel_size), single(module.stride), single(module.padding)
    if (k is None or s != k or p != 0 or module.ceil_mode
            or module.divisor_override is not None):
        raise ValueError(f"lower: AvgPool2d {qualname} must be square with stride = kernel, no "
                         f"padding, floor mode and no divisor override; got kernel_size="
                         f"{module.kernel_size}, stride={module.stride}, padding={module.padding}, "
                         f"ceil_mode={module.ceil_mode}")
    return k


def _array(t: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy: the graph must not alias (or keep alive) the model's storage."""
    return np.array(t.detach().cpu().to(torch.float32).numpy(), dtype=np.float32, copy=True)


def _checked_weights(qualname: str, layer: EILayer) -> dict[str, np.ndarray]:
    """The layer's lowered arrays as float32 copies: W_EE, W_IE, W_EI with absent synapses at 0,
    and (not for the readout) g_I, g_E, b_E; refused if not finite, or negative but b_E."""
    # The readout's g_I, g_E and b_E are dead in the model (spec §3): not lowered, not checked.
    used = ("weight_ee", "weight_ie", "weight_ei") + (
        () if layer.readout else ("gain_i", "gain_e", "bias"))
    # The masked weights: a synapse outside the layer's connectivity is a zero, i.e. absent.
    effective = dict(zip(("weight_ee", "weight_ie", "weight_ei"),
                         layer.effective_weights(), strict=True))
    weights = {n: _array(effective.get(n, getattr(layer, n))) for n in used}
    for key, value in weights.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"lower: {qualname}.{key} contains NaN or infinite values")
        if key != "bias" and value.size and float(value.min()) < 0:
            raise ValueError(f"lower: {qualname}.{key} has negative values (min "
                             f"{float(value.min()):.4g}); the E-I graph carries signs in "
                             "projection kinds, so W_EE, W_IE, W_EI, g_I and g_E must be "
                             ">= 0 (Dale's law; train with a non-negative init)")
    return weights


class _Builder:
    """The walk's state: the population feeding the next layer and what lies between them."""

    def __init__(self, in_shape: tuple[int, ...], options: EIOptions) -> None:
        self.options = options
        self.populations: list[Population] = [Population("input", "input", in_shape)]
        self.projections: list[Projection] = []
        self.source = "input"
        self.shape = in_shape  # of the source population, before the pending pool
        self.pending_pool = 1  # AvgPools met since the source, folded into the next projections
        self.flat = False
        self.readout: str | None = None

    def population(self, name: str) -> Population:
        return next(p for p in self.populations if p.name == name)

    def add_pool(self, qualname: str, module: nn.AvgPool2d) -> None:
        k = _pool_size(qualname, module)
        if len(self.shape) != 3 or self.flat:
            raise ValueError(f"lower: AvgPool2d {qualname} needs a (C, H, W) feature map, got "
                             f"{'a flattened vector' if self.flat else self.shape}")
        # Two floor-mode k-pools in a row average the top-left (k1 k2)^2 windows: one pool.
        self.pending_pool *= k
        if self.shape[1] // self.pending_pool < 1 or self.shape[2] // self.pending_pool < 1:
            raise ValueError(f"lower: AvgPool2d {qualname} shrinks the {self.shape} map to "
                             "nothing")

    def _pooled_shape(self) -> tuple[int, ...]:
        if self.pending_pool == 1:
            return self.shape
        c, h, w = self.shape
        return (c, h // self.pending_pool, w // self.pending_pool)

    def _layer_shapes(self, qualname: str, layer: EILayer
                      ) -> tuple[str, dict[str, Any], tuple[int, ...], tuple[int, ...]]:
        """The layer's projection op and attrs (the pending pool, a conv's stride and padding)
        and its E and I population shapes, checked against the source."""
        pooled = self._pooled_shape()
        attrs: dict[str, Any] = {"pool": self.pending_pool} if self.pending_pool > 1 else {}
        if isinstance(layer, EIConv2d):
            if self.flat or len(pooled) != 3:
                raise ValueError(f"lower: conv layer {qualname} needs a (C, H, W) input, got "
                                 f"{'a flattened vector' if self.flat else pooled}")
            c, h, w = pooled
            if c != layer.in_channels:
                raise ValueError(f"lower: conv layer {qualname} expects {layer.in_channels} "
                                 f"input channels, its source has {c}")
            k, s, p = layer.kernel_size, layer.stride, layer.padding
            out_hw = ((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
            if min(out_hw) < 1:
                raise ValueError(f"lower: conv layer {qualname} has no output on a {h}x{w} map")
            attrs = {**attrs, "stride": int(s), "padding": int(p)}
            return "conv", attrs, (layer.n_e, *out_hw), (layer.n_i, *out_hw)
        fan_in = math.prod(pooled)
        if len(pooled) != 1 and not self.flat:
            raise ValueError(f"lower: linear layer {qualname} gets a {pooled} map without a "
                             "Flatten before it")
        if fan_in != layer.in_features:
            raise ValueError(f"lower: linear layer {qualname} expects {layer.in_features} "
                             f"inputs, its source gives {fan_in} ({pooled})")
        return "dense", attrs, (layer.n_e,), (layer.n_i,)

    def layer(self, qualname: str, layer: EILayer, lif: nn.Module | None) -> None:
        """One E-I layer: its I and E (or readout) populations and its projections from the
        current source, which the layer's E population then replaces."""
        weights = _checked_weights(qualname, layer)
        op, attrs, e_shape, i_shape = self._layer_shapes(qualname, layer)
        opts = self.options
        inh, exc = f"{qualname}.inh", f"{qualname}.{'readout' if layer.readout else 'exc'}"
        self.populations.append(Population(
            inh, "inh", i_shape, qualname,
            {"response": str(opts.inhibitory), "theta_i": float(opts.theta_i)}))
        if layer.readout:
            self.populations.append(Population(exc, "readout", e_shape, qualname,
                                               {"mode": "current"}))
            self.readout = exc
        else:
            params = lif.params if isinstance(lif, LIF) else opts.lif
            self.populations.append(Population(
                exc, "exc", e_shape, qualname,
                {"tau": float(params.tau), "v_threshold": float(params.v_threshold),
                 "neuron": "lif"},
                {"gain_e": weights["gain_e"], "bias": weights["bias"]}))
        w_ei = weights["weight_ei"]
        self.projections += [
            Projection(f"{qualname}.ee", self.source, exc, "exc", op, weights["weight_ee"],
                       attrs=dict(attrs)),
            Projection(f"{qualname}.ie", self.source, inh, "exc", op, weights["weight_ie"],
                       attrs=dict(attrs)),
            Projection(f"{qualname}.sub", inh, exc, "sub", "pointwise", w_ei.copy()),
        ]
        if not layer.readout:
            # The same float32 product torch forms for Eq. 13 (W_EI * g_I), so folding is exact.
            self.projections.append(Projection(f"{qualname}.div", inh, exc, "div", "pointwise",
                                               w_ei * weights["gain_i"][None, :]))
        self.source, self.shape, self.pending_pool, self.flat = exc, e_shape, 1, False


# --------------------------------------------------------------------------- unrolling
