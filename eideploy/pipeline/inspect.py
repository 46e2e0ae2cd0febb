"""``eideploy inspect MODEL.pt``: a trained model described, and checked against a target.

No export is written: the model is lowered to its E-I graph and the design-rule check counts
fan-in on the graph as lowered, so even paper-sized models answer in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import sha256_file
from ..targets.dynapse2.drc import check
from ..targets.dynapse2.target import Target, resolve_target

__all__ = ["model_overview"]


def model_overview(model_path: str | Path, *, target: str | Path | Target = "dynapse2",
                   chips: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """What ``eideploy inspect MODEL.pt`` shows: architecture, parameters, layers, training
    metrics and the design-rule check of the lowered graph against ``target``.

    Fast on paper-sized models: the check counts fan-in on the graph as lowered (conv layers
    stay convolutions, nothing is unrolled). A model that has no E-I graph form (a ResNet, a
    BN baseline) is still described; its ``drc`` is ``None`` and ``drc_error`` says why.
    ``threads``: torch's intra-op threads during this call (restored after; None: as set).
    """
    # torch-side modules load here, not at import: pipeline.export re-exports this function
    # and exporting or reading a graph never loads torch
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        return _overview(Path(model_path), resolve_target(target, chips))
    finally:
        torch.set_num_threads(previous)


def _overview(model_path: Path, resolved: Target) -> dict[str, Any]:
    from ..graph.lowering import lower
    from ..train.checkpoint import load_model

    model, checkpoint = load_model(model_path)
    arch = checkpoint["architecture"]
    layers = _layer_records(model)
    overview: dict[str, Any] = {
        "file": str(model_path), "sha256": sha256_file(model_path),
        "architecture": arch["name"], "arguments": arch["kwargs"],
        "options": checkpoint.get("options"),
        "recipe": (checkpoint.get("recipe") or {}).get("name"),
        "T": int(getattr(model, "T", 0)), "in_shape": list(getattr(model, "in_shape", [])),
        "classes": int(getattr(model, "num_classes", 0)),
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": layers, "metrics": checkpoint.get("metrics") or {},
        "target": resolved.name, "drc": None, "drc_error": None,
    }
    try:
        graph = lower(model)
    except ValueError as exc:
        overview["drc_error"] = str(exc)
        return overview
    report = check(graph, resolved)
    per_layer = _drc_per_layer(report.summary["populations"])
    for layer in layers:
        layer.update(per_layer.get(layer["layer"], {}))
    overview["drc"] = {"ok": report.ok, "summary": report.summary,
                       "violations": report.summary["violations"],
                       "report": report.format()}
    return overview


def _layer_records(model: Any) -> list[dict[str, Any]]:
    """One record per E-I layer of the torch model: kind, inputs, E and I sizes, fan-in."""
    from ..nn import EIConv2d, EILayer

    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, EILayer):
            continue
        if isinstance(module, EIConv2d):
            kind = (f"conv {module.kernel_size}x{module.kernel_size} s{module.stride} "
                    f"p{module.padding}")
            inputs = module.in_channels
        else:
            kind = "linear"
            inputs = getattr(module, "in_features", module.fan_in)
        layers.append({"layer": name, "type": kind + (" (readout)" if module.readout else ""),
                       "inputs": int(inputs), "n_e": module.n_e, "n_i": module.n_i,
                       "fan_in": module.fan_in,
                       "parameters": sum(p.numel() for p in module.parameters())})
    return layers


def _drc_per_layer(populations: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The design-rule check's per-population counts summed per layer, with its worst fan-in."""
    per_layer: dict[str, dict[str, Any]] = {}
    for name, pop in populations.items():
        entry = per_layer.setdefault(pop["layer"] or name, {
            "neurons": 0, "cores": 0, "fan_in_max": -1, "worst_population": ""})
        entry["neurons"] += pop["neurons"]
        entry["cores"] += pop["cores"]
        if pop["fan_in"]["max"] > entry["fan_in_max"]:
            entry["fan_in_max"] = pop["fan_in"]["max"]
            entry["worst_population"] = name
    return per_layer
