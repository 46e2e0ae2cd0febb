"""Accuracy of a trained model, or of an export's float and quantized graphs: what ``eideploy
evaluate`` prints."""

from __future__ import annotations

from pathlib import Path

from ..data import eval_transform, load_model_data
from ..graph import EIGraph
from ..graph.execute import accuracy as graph_accuracy
from ..train import load_model
from ..train.trainer import evaluate, resolve_device
from .notes import note
from .simulate import DEFAULT_BATCH_SIZE, export_data

__all__ = ["evaluate_model", "evaluate_export"]


def evaluate_model(model_path: str | Path, *, data: str | None = None,
                   data_dir: str | None = None, split: str = "test",
                   batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto"
                   ) -> tuple[str, dict[str, float]]:
    """The data set's name and the model's ``accuracy`` (%) and ``loss`` on its ``split``, as
    training evaluates it (the data set and its directory default to the model's recipe)."""
    dev = resolve_device(device)
    net, checkpoint = load_model(model_path, dev)
    recipe = checkpoint.get("recipe") or {}
    dataset = load_model_data(checkpoint.get("data"), recipe.get("data"), split, data=data,
                              data_dir=data_dir, T=getattr(net, "T", 4), source=str(model_path),
                              log=note)
    name = dataset.name
    return name, evaluate(net, dataset, batch_size=batch_size, device=dev,
                          transform=eval_transform(name))


def evaluate_export(out: str | Path, *, data: str | None = None, data_dir: str | None = None,
                    split: str = "test", batch_size: int = DEFAULT_BATCH_SIZE
                    ) -> tuple[str, dict[str, float]]:
    """The data set's name and the accuracy (%) of the export's ``float`` and ``quantized``
    graphs in the float executor."""
    loaded = export_data(out, data, data_dir, split, quantized=False)
    graphs = {"float": loaded.graph, "quantized": EIGraph.load(Path(out) / "quantized")}
    return loaded.dataset, {k: graph_accuracy(g, loaded.x, loaded.y, batch_size=batch_size)
                            for k, g in graphs.items()}
