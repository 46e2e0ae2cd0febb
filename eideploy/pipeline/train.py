"""``eideploy train``: train a recipe, then, for a recipe with a ``target``, check the hardware fit.

Training (``eideploy.train``) stops at the trained checkpoints; this stage chains it with the
compiler, which training never imports (DESIGN §1: only the pipeline chains stages). For a run
that completed its schedule with a ``target`` section, ``metrics.json`` gets a ``hardware``
block: for ``model.pt`` (and ``float.pt`` when QAT ran) the torch test accuracy, the design-rule
check of its lowered graph and the test accuracy of the float and the exported (quantized)
graph (docs/hardware-aware.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..atomic import atomic_write_bytes
from ..data import eval_transform, iterate_batches, load_recipe_data
from ..graph.execute import FloatExecutor
from ..graph.lowering import lower
from ..targets.dynapse2.compile import compile_graph
from ..targets.dynapse2.drc import check
from ..targets.dynapse2.target import Target
from ..train import Recipe, TrainResult, load_model, train
from ..train.trainer import evaluate, hardware_target

__all__ = ["train_and_summarise", "hardware_summary"]


def train_and_summarise(recipe: Recipe, *, data_dir: str | None = None,
                        log: Callable[[str], None] = print, **train_kwargs: Any) -> TrainResult:
    """:func:`eideploy.train.train` (same arguments), then the hardware block of a completed
    run of a recipe with a target, written into ``metrics.json`` and logged on rank 0."""
    result = train(recipe, data_dir=data_dir, log=log, **train_kwargs)
    ran = result.recipe or recipe
    target = hardware_target(ran)
    if (target is None or not result.completed or not (result.run_dir / "model.pt").is_file()
            or (dist.is_initialized() and dist.get_rank() != 0)):
        return result
    cfg = ran.data
    test_set = load_recipe_data(cfg.model_dump(), "test", data_dir, T=ran.model.T)
    hardware = hardware_summary(result.run_dir, test_set, target, batch_size=cfg.eval_batch_size,
                                transform=eval_transform(cfg.dataset))
    metrics_path = result.run_dir / "metrics.json"
    summary = json.loads(metrics_path.read_text())
    summary["hardware"] = hardware
    atomic_write_bytes(metrics_path, json.dumps(summary, indent=2).encode())
    for name, rec in hardware.items():
        exported = rec["exported_accuracy"]
        log(f"{name}.pt: torch {rec['torch_accuracy']:.2f}%, exported (quantized) graph "
            + (f"{exported:.2f}%" if exported is not None else "n/a")
            + f", {rec['drc_violations']} design-rule violation(s)")
    return result


def hardware_summary(run_dir: Path, test_set, target: Target, *, batch_size: int = 256,
                     transform: Callable | None = None) -> dict[str, dict[str, Any]]:
    """For ``model.pt`` (and ``float.pt`` when QAT ran): the torch test accuracy, the design-rule
    check of its lowered graph on ``target``, and the test accuracy of the float graph and of the
    exported (quantized) graph, both run by the float executor."""
    cpu = torch.device("cpu")
    out: dict[str, dict[str, Any]] = {}
    for name in ("float.pt", "model.pt"):
        path = run_dir / name
        if not path.is_file():
            continue
        model, _ = load_model(path)
        torch_acc = evaluate(model, test_set, batch_size=batch_size, device=cpu,
                             transform=transform)["accuracy"]
        graph = lower(model)
        report = check(graph, target)
        record: dict[str, Any] = {"torch_accuracy": torch_acc,
                                  "drc_violations": len(report.violations),
                                  "exported_accuracy": None}
        if report.ok:
            compiled = compile_graph(graph, target)
            executors = (FloatExecutor(graph), FloatExecutor(compiled.qgraph.graph))
            hits = [0, 0]
            count = 0
            for x, y in iterate_batches(test_set, batch_size, shuffle=False, device=cpu,
                                        augment=transform):
                for i, executor in enumerate(executors):
                    hits[i] += int((executor.predict(x.numpy()) == y.numpy()).sum())
                count += y.numel()
            summary = compiled.summary()
            record.update(graph_accuracy=100.0 * hits[0] / count,
                          exported_accuracy=100.0 * hits[1] / count,
                          quantization_relative_rmse=summary["quantization"]["relative_rmse"],
                          neurons=summary["neurons"], cores=summary["cores"],
                          chips=summary["chips"], max_fan_in=summary["cam"]["max_per_neuron"],
                          dropped_synapses=summary["dropped_synapses"])
        out[name.removesuffix(".pt")] = record
    return out
