"""The float model through NeuroBench's own harness: footprint, connection sparsity, accuracy,
activation sparsity and synaptic operations (``eideploy evaluate MODEL --neurobench``).

NeuroBench counts synaptic operations on ``nn.Linear`` / ``nn.Conv`` modules, by forward hooks:
per call, a binary copy of the layer (non-zero weights -> 1) applied to the binarised input
(non-zero -> 1), summed. eideploy's E-I layers compute their currents with functional
products, which NeuroBench does not see, so :func:`neurobench_network` rewrites each
:class:`~eideploy.nn.EILinear` as the same circuit built from ``nn.Linear`` connections (the
E-I Prop equations of ``nn.functional``, op by op) and its interneurons as an activation
module. The rewritten network computes the model's forward to float rounding (tested).

``neurobench`` is an optional extra (``pip install 'eideploy[neurobench]'``), imported only here
and only when used.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nn import EIConv2d, EILinear
from ..nn import functional as EF

__all__ = ["NEUROBENCH_HINT", "EIInterneurons", "NeuroBenchEILinear", "neurobench_network",
           "neurobench_evaluate", "neurobench_model_metrics", "neurobench_line",
           "neurobench_entry"]

NEUROBENCH_HINT = "NeuroBench metrics need neurobench: pip install 'eideploy[neurobench]'"


class EIInterneurons(nn.Module):
    """The interneurons' response ``r_I`` (identity or ``floor(relu(I_IE) / theta_I)``) as a
    module, so NeuroBench counts them among the activations."""

    def __init__(self, mode: str, theta_i: float) -> None:
        super().__init__()
        self.mode, self.theta_i = mode, float(theta_i)

    def forward(self, i_ie: torch.Tensor) -> torch.Tensor:
        return EF.inhibitory_response(i_ie, self.mode, self.theta_i)


class NeuroBenchEILinear(nn.Module):
    """An :class:`EILinear` as four ``nn.Linear`` connections NeuroBench can hook: ``ee``
    (W_EE, AMPA), ``ie`` (W_IE), ``sub`` (W_EI, GABA) and ``div`` (W_EI g_I, SHUNT; not in a
    readout layer), with the effective (masked) weights; Eqs. 9-15 between them."""

    def __init__(self, layer: EILinear) -> None:
        super().__init__()
        w_ee, w_ie, w_ei = (w.detach().clone() for w in layer.effective_weights())
        opts = layer.options
        self.readout = layer.readout
        self.stabilisation, self.eps = opts.stabilisation, float(opts.eps)
        self.ee = _linear(w_ee)
        self.ie = _linear(w_ie)
        self.interneurons = EIInterneurons(opts.inhibitory, opts.theta_i)
        self.sub = _linear(w_ei)
        if not self.readout:
            self.div = _linear(w_ei * layer.gain_i.detach()[None, :])
            self.register_buffer("gain_e", layer.gain_e.detach().clone())
            self.register_buffer("bias", layer.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i_ee = self.ee(x)
        r_i = self.interneurons(self.ie(x))
        i_sub = self.sub(r_i)
        if self.readout:
            return EF.ei_readout_currents(i_ee, i_sub)
        return EF.ei_integrate_currents(
            i_ee, i_sub, self.div(r_i), self.gain_e, self.bias,
            lambda d: EF.stabilise(d, self.stabilisation, self.eps))


def _linear(weight: torch.Tensor) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    return linear


def neurobench_network(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose E-I linear layers are :class:`NeuroBenchEILinear` (module doc).
    Convolutional E-I layers are refused: their W_EI is a per-pixel product NeuroBench would
    count as a dense layer."""
    net = copy.deepcopy(model).eval()
    for name, module in list(net.named_modules()):
        if isinstance(module, EIConv2d):
            raise ValueError(f"layer {name}: NeuroBench metrics cover E-I linear layers "
                             "(MLPs and hardware-sized networks), not E-I convolutions")
        if isinstance(module, EILinear):
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            setattr(parent, child, NeuroBenchEILinear(module))
    return net


def neurobench_evaluate(model_path: str | Path, x: Any, y: Any, *, batch_size: int = 128
                        ) -> dict[str, Any]:
    """NeuroBench's metrics of the float model ``model_path`` on ``(x, y)``, through its
    ``Benchmark`` harness: ``Footprint`` (bytes), ``ConnectionSparsity``,
    ``ClassificationAccuracy``, ``ActivationSparsity`` and ``SynapticOperations``
    (``Effective_MACs``, ``Effective_ACs``, ``Dense``, per sample). Raises ImportError with the
    install hint when neurobench is missing."""
    try:
        from neurobench.benchmarks import Benchmark
        from neurobench.metrics.static import ConnectionSparsity, Footprint
        from neurobench.metrics.workload import (
            ActivationSparsity,
            ClassificationAccuracy,
            SynapticOperations,
        )
        from neurobench.models import TorchModel
    except ImportError as exc:
        raise ImportError(f"{NEUROBENCH_HINT} ({exc})") from None

    from ..nn.layers import LIF
    from ..train import load_model

    model, _ = load_model(model_path, torch.device("cpu"))
    wrapped = TorchModel(neurobench_network(model))
    wrapped.add_activation_module(LIF)
    wrapped.add_activation_module(EIInterneurons)
    inputs = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(y)).long().reshape(-1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, labels),
                                         batch_size=batch_size, shuffle=False)

    def decide(logits: torch.Tensor) -> torch.Tensor:  # the float model's logits -> classes
        return logits.argmax(-1)

    benchmark = Benchmark(wrapped, loader, [], [decide],
                          [[Footprint, ConnectionSparsity],
                           [ClassificationAccuracy, ActivationSparsity, SynapticOperations]])
    results = benchmark.run(quiet=True)
    return {key: (dict(value) if isinstance(value, dict) else float(value))
            for key, value in results.items()}


def neurobench_model_metrics(model_path: str | Path, *, data: str | None = None,
                             data_dir: str | None = None, split: str = "test",
                             batch_size: int = 128) -> tuple[str, dict[str, Any]]:
    """The data set's name and :func:`neurobench_evaluate`'s metrics on its ``split`` (the data
    set defaults to the model's recipe), with eideploy's own count of the same synaptic
    operations on the lowered float graph (``eideploy_synaptic_operations``) beside them."""
    try:
        import neurobench  # noqa: F401  (the hint before any data is loaded)
    except ImportError as exc:
        raise ImportError(f"{NEUROBENCH_HINT} ({exc})") from None
    from ..data import eval_transform, load_dataset, to_float
    from ..graph.lowering import lower
    from ..train import load_model
    from .cost import CostError, float_cost

    model, checkpoint = load_model(model_path, torch.device("cpu"))
    recipe = checkpoint.get("recipe") or {}
    name = data or (recipe.get("data") or {}).get("dataset")
    if not name:
        raise ValueError(f"{model_path}: the checkpoint names no data set; pass --data NAME")
    if eval_transform(name) is not None:
        raise ValueError(f"{name}: NeuroBench metrics run on data sets without an evaluation "
                         "transform")
    root = data_dir or (recipe.get("data") or {}).get("data_dir")
    dataset = load_dataset(name, split, root, T=getattr(model, "T", 4))
    x = to_float(dataset.inputs).numpy()
    y = dataset.labels.numpy().reshape(-1)
    metrics = neurobench_evaluate(model_path, x, y, batch_size=batch_size)
    try:
        metrics["eideploy_synaptic_operations"] = float_cost(lower(model), x).to_dict()
    except (CostError, ValueError) as exc:
        metrics["eideploy_synaptic_operations"] = {"error": str(exc)}
    return name, metrics


def neurobench_line(metrics: dict[str, Any]) -> str:
    """:func:`neurobench_model_metrics`'s result in one line."""
    ops = metrics["SynapticOperations"]
    own = metrics.get("eideploy_synaptic_operations") or {}
    line = (f"NeuroBench: footprint {metrics['Footprint']:.0f} bytes, connection sparsity "
            f"{metrics['ConnectionSparsity']:.3f}, accuracy "
            f"{100 * metrics['ClassificationAccuracy']:.2f}%, activation sparsity "
            f"{metrics['ActivationSparsity']:.3f}, synaptic operations per sample "
            f"{ops['Effective_MACs'] + ops['Effective_ACs']:.0f} (effective MACs "
            f"{ops['Effective_MACs']:.0f}, ACs {ops['Effective_ACs']:.0f}; dense "
            f"{ops['Dense']:.0f})")
    if "total_synaptic_events" in own:
        line += f"; eideploy's float-graph count {own['total_synaptic_events']:.0f}"
    return line


def neurobench_entry(model_path: str | Path, x: Any, y: Any) -> dict[str, Any]:
    """:func:`neurobench_evaluate` for a report: the metrics, or ``{"skipped": why}`` when
    neurobench is not installed or the model has layers it does not cover."""
    try:
        return neurobench_evaluate(model_path, x, y)
    except ImportError:
        return {"skipped": NEUROBENCH_HINT}
    except ValueError as exc:
        return {"skipped": str(exc)}
