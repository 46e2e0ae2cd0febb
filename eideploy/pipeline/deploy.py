"""A deployment object: one network compiled for a target, run by every backend, saved as an
export directory (in the spirit of hls4ml's ``compile()/predict()`` and sinabs'
``DynapcnnNetwork``).

>>> d = eideploy.deploy("models/digits-dynapse2.pt", target="dynapse2")
>>> d.predict(x, backend="integer")       # float | quantized | integer | analog | board
>>> d.accuracy(x, y, backend="analog", mismatch=0.1, seed=3)
>>> d.save("out/")                          # the export directory 'eideploy export' writes
>>> d.report()["summary"]

:func:`deploy` runs the pipeline of ``eideploy export`` in memory: load (a ``model.pt``) ->
lower -> readout copies -> ``compile_graph`` (DRC, placement, quantization, routing, bias codes)
-> report. The backends are the stages' own executors, unchanged:

=============  ==================================================================================
``torch``      the trained model itself (only when a model was deployed)
``float``      the float E-I graph in :class:`~eideploy.graph.execute.FloatExecutor` (equal to
               the torch forward to ~1e-5)
``quantized``  the quantized graph the chip computes, in the float executor
``integer``    the quantized graph in the bit-accurate
               :class:`~eideploy.sim.integer.IntegerSimulator` (``division``: exact, lut:N, shift)
``analog``     :class:`~eideploy.targets.dynapse2.analog.AnalogSimulator` of the configuration
               (``mismatch``, ``seed``)
``board``      the export on a board: the virtual board (every spike routed from the applied
               configuration alone) unless ``virtual=False`` asks for a real one
=============  ==================================================================================

Every backend decides as the command line does: a class's readout neurons summed (the export has
several per class, ``eideploy.graph.readout``), ties broken by membrane.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import sha256_file
from ..graph.execute import FloatExecutor
from ..graph.ir import EIGraph
from ..sim.integer import IntegerSimulator
from ..targets.dynapse2.analog import AnalogSimulator
from ..targets.dynapse2.compile import CompiledNetwork, compile_graph
from ..targets.dynapse2.target import Target, resolve_target
from .export import chip_graph, export_graph, export_model, lower_model_file
from .report import build_report

__all__ = ["BACKENDS", "Deployment", "deploy"]

#: The backends of :meth:`Deployment.predict`, cheapest first.
BACKENDS = ("torch", "float", "quantized", "integer", "analog", "board")
#: Samples per batch for the executors and the analog simulator (as ``eideploy simulate``).
DEFAULT_BATCH_SIZE = 128


def _as_array(x: Any) -> np.ndarray:
    """Inputs as a float numpy array: a torch tensor (uint8 pixels scaled to [0, 1], as the data
    sets' ``to_float``), a numpy array or nested lists."""
    if hasattr(x, "detach"):  # a torch tensor; torch is only imported by whoever made it
        x = x.detach().cpu().numpy()
    array = np.asarray(x)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    if array.ndim < 2 or len(array) == 0:
        raise ValueError(f"predict: inputs must be a batch (B, *in_shape) or (B, T, *in_shape) "
                         f"of at least one sample, got shape {array.shape}")
    return array


@dataclass
class Deployment:
    """A network compiled for a target (:func:`deploy`): ``graph`` (the float E-I graph with its
    readout copies), ``compiled`` (every compilation stage and the configuration), ``target``,
    ``seed``; ``model`` and ``model_path`` when it came from a trained model."""

    graph: EIGraph
    compiled: CompiledNetwork
    target: Target
    seed: int = 0
    model: Any = None
    model_path: Path | None = None
    readout_copies: int = 1
    _report: dict[str, Any] | None = field(default=None, repr=False)
    _executors: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def quantized(self) -> EIGraph:
        """The quantized, all-sparse graph the chip computes."""
        return self.compiled.qgraph.graph

    @property
    def config(self) -> dict[str, Any]:
        """The configuration document (``dynapse2.json``)."""
        return self.compiled.config

    # ------------------------------------------------------------------ outputs
    def report(self) -> dict[str, Any]:
        """The export's report (``report.json``): resources, utilisation, fan-in, quantization
        error, bias codes, design rules."""
        if self._report is None:
            self._report = build_report(self.graph, self.compiled, self.target)
        return self._report

    def save(self, out_dir: str | Path, *, overwrite: bool = False) -> Path:
        """Write the export directory (``eideploy export``'s, byte for byte for a model file)
        to ``out_dir``, atomically; returns its path. Raises ``ExportError`` for a destination
        that exists (unless ``overwrite``) or cannot be written, ``ValueError`` for a model file
        changed since :func:`deploy` read it."""
        if self.model_path is not None:
            if sha256_file(self.model_path) != self.graph.meta.get("source_model_sha256"):
                raise ValueError(f"{self.model_path}: changed since it was deployed; deploy it "
                                 "again before saving")
            result = export_model(self.model_path, out_dir, target=self.target, seed=self.seed,
                                  overwrite=overwrite, readout_copies=self.readout_copies)
        else:  # the graph has its copies already: export it as it is
            result = export_graph(self.graph, out_dir, target=self.target, seed=self.seed,
                                  overwrite=overwrite, readout_copies=1)
        return Path(result.out_dir)

    # ------------------------------------------------------------------ backends
    def predict(self, x: Any, backend: str = "integer", *, division: str = "exact",
                mismatch: float = 0.0, seed: int = 0, virtual: bool = True,
                batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Predicted classes ``(B,)`` of ``x`` (``(B, *in_shape)`` static or
        ``(B, T, *in_shape)``; numpy or torch) computed by ``backend`` (module doc).
        ``division``: the integer simulator's divider; ``mismatch`` (relative standard
        deviation) and ``seed``: the analog simulator's device mismatch draw; ``virtual``: the
        virtual board (default) or a connected one (``BoardUnavailable`` when there is none)."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x = _as_array(x)
        if backend == "torch":
            return self._predict_torch(x, batch_size)
        if backend == "analog":
            sim = AnalogSimulator(self.config, mismatch=mismatch, seed=seed,
                                  batch_size=batch_size)
            return np.asarray(sim.run(x).predictions())
        if backend == "board":
            return self._predict_board(x, virtual)
        run = self._executor(backend, division).predict
        return np.concatenate([run(x[start:start + batch_size])
                               for start in range(0, len(x), batch_size)])

    def accuracy(self, x: Any, y: Any, backend: str = "integer", **options: Any) -> float:
        """Top-1 accuracy (%) of ``backend`` on ``(x, y)``; ``options`` as :meth:`predict`."""
        labels = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y).reshape(-1)
        if len(labels) != len(x):
            raise ValueError(f"accuracy: {len(x)} inputs but {len(labels)} labels")
        predicted = self.predict(x, backend, **options)
        return 100.0 * float(np.mean(predicted == labels))

    def _executor(self, backend: str, division: str) -> Any:
        key = f"{backend}:{division}" if backend == "integer" else backend
        if key not in self._executors:
            if backend == "float":
                self._executors[key] = FloatExecutor(self.graph)
            elif backend == "quantized":
                self._executors[key] = FloatExecutor(self.quantized)
            else:
                self._executors[key] = IntegerSimulator(self.quantized, division)
        return self._executors[key]

    def _predict_torch(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        if self.model is None:
            raise ValueError("backend 'torch' needs a trained model; this deployment was made "
                             "from an E-I graph (use backend 'float')")
        import torch

        from ..data import eval_transform
        from ..train.trainer import predict_batch

        try:  # the data set's validation transform (TinyImageNet: Resize(32)), if it has one
            transform = eval_transform(str(self.graph.meta.get("dataset")))
        except ValueError:
            transform = None
        parts = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size]))
                _, predicted = predict_batch(self.model, transform(batch) if transform
                                             else batch)
                parts.append(predicted.cpu().numpy())
        return np.concatenate(parts)

    def _predict_board(self, x: np.ndarray, virtual: bool) -> np.ndarray:
        from ..targets.dynapse2.board.runner import run_on_board

        with tempfile.TemporaryDirectory(prefix="eideploy-board-") as tmp:
            out = self.save(Path(tmp) / "export")
            # the runner scores against labels; predictions do not depend on them
            result = run_on_board(out, x, np.zeros(len(x), dtype=np.int64), virtual=virtual,
                                  progress=False)
        return np.asarray(result.predictions)


def _load(model_or_graph: Any) -> tuple[EIGraph, Any, Path | None]:
    """The float graph of a ``model.pt`` path, a loaded SpikingNetwork or an EIGraph."""
    if isinstance(model_or_graph, EIGraph):
        return model_or_graph, None, None
    if isinstance(model_or_graph, (str, Path)):
        path = Path(model_or_graph)
        graph, model, _, _ = lower_model_file(path, "deployed")
        return graph, model, path
    import torch

    from ..graph.lowering import lower  # torch loads here: a graph never needs it

    if isinstance(model_or_graph, torch.nn.Module):
        model = model_or_graph.eval()
        return lower(model), model, None
    raise TypeError("deploy: expected a path to a model.pt, an eideploy SpikingNetwork or an "
                    f"EIGraph, got {type(model_or_graph).__name__}")


def deploy(model_or_graph: Any, target: str | Path | Target = "dynapse2", *, seed: int = 0,
           chips: int | None = None, readout_copies: int | None = None) -> Deployment:
    """Compile a network for ``target`` in memory (the pipeline of ``eideploy export``, nothing
    written): ``model_or_graph`` is a ``model.pt`` path, a loaded eideploy ``SpikingNetwork``
    or an :class:`~eideploy.graph.ir.EIGraph`. ``readout_copies``: readout neurons per class
    (default: 8 where the readout core has room, as the export). Raises as
    :func:`eideploy.pipeline.export.export_model`: ``CheckpointError``, ``TargetError``,
    ``ValueError`` (no E-I graph form), ``DoesNotFit`` (every design-rule violation),
    ``MappingError``."""
    graph, model, path = _load(model_or_graph)
    resolved = resolve_target(target, chips)
    graph, copies = chip_graph(graph, resolved, readout_copies)
    compiled = compile_graph(graph, resolved, seed=seed)
    return Deployment(graph, compiled, resolved, seed, model, path, copies)
