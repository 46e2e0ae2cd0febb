"""An export directory run in the simulators: what ``eideploy simulate`` prints.

* :func:`export_data`: the export's (quantized) graph and the data set it was trained on;
* :func:`simulate_integer`: the bit-accurate integer simulator per division mode, sample 0's
  spike rasters, and optionally each mode's integer network as ONNX checked against
  onnxruntime bit for bit;
* :func:`simulate_analog`: the analog simulator of ``dynapse2.json`` over mismatch draws
  (optionally after a readout calibration), and sample 0's spikes binned per model step.

Each returns a typed record; the command line only prints it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import FILE_MODE, atomic_write_bytes, json_plain
from ..data import load_model_data, to_float
from ..graph import EIGraph
from ..graph.host import class_totals
from ..sim.integer import IntegerSimulator
from ..sim.integer import accuracy as integer_accuracy
from ..sim.onnx_export import check_against_simulator, save_onnx
from ..targets.dynapse2.analog import AnalogAccuracy, AnalogSimulator, accuracy_trials
from ..targets.dynapse2.biases import DT_SECONDS
from ..targets.dynapse2.config import read_config
from .notes import note
from .plots import plot_raster

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_DIVISIONS", "ExportData", "export_data",
           "calibration_inputs",
           "IntegerMode", "OnnxCheck", "IntegerSimulation", "simulate_integer",
           "AnalogSimulation", "simulate_analog", "bin_spike_times", "write_rasters"]

DEFAULT_DIVISIONS = ("exact", "lut:8", "shift")
#: Samples per batch of every command that runs a simulator or a model (``--batch-size``): the
#: analog simulator, the most memory-hungry, runs a 1292-neuron model at this size in a few GB.
DEFAULT_BATCH_SIZE = 128


@dataclass
class ExportData:
    """An export's graph (quantized or float) and the data set it names, as float arrays."""

    graph: EIGraph
    x: np.ndarray
    y: np.ndarray
    dataset: str


def export_data(out: str | Path, data: str | None, data_dir: str | None, split: str,
                quantized: bool = True) -> ExportData:
    """The (quantized) graph of the export directory ``out`` and the data set it was trained
    on (``data`` overrides it). The directory is checked whole first
    (:func:`eideploy.pipeline.export.load_export`)."""
    from .export import export_graph_of

    out = Path(out)
    graph = export_graph_of(out, quantized)
    recorded = graph.meta.get("data")
    dataset = load_model_data(recorded if isinstance(recorded, dict) else None,
                              {"dataset": graph.meta.get("dataset")}, split, data=data,
                              data_dir=data_dir, T=graph.T, source=str(out), log=note)
    return ExportData(graph, to_float(dataset.inputs).numpy(), dataset.labels.numpy(),
                      dataset.name)


def calibration_inputs(dataset: str, data_dir: str | None, T: int, samples: int,
                       recorded: Mapping | None = None) -> np.ndarray:
    """The first ``samples`` inputs of the training split, for the analog readout calibration
    (labels unused: the host has no labels on a deployed chip); ``recorded`` is the identity of
    the data the model was trained on (graph meta ``data``), which locates a user's files."""
    train = load_model_data(recorded if isinstance(recorded, dict) else None,
                            {"dataset": dataset}, "train", data_dir=data_dir, T=T)
    return to_float(train.inputs[:samples]).numpy()


# --------------------------------------------------------------------------- integer
@dataclass
class IntegerMode:
    """One division mode over the data set: accuracy (%) and saturation counts."""

    division: str
    accuracy: float
    saturations: dict[str, int]

    @property
    def saturation_events(self) -> int:
        return int(sum(self.saturations.values()))


@dataclass
class OnnxCheck:
    """A mode's integer network written as ONNX and run by onnxruntime against the simulator."""

    division: str
    path: Path
    bit_identical: bool
    mismatches: int
    elements: int


@dataclass
class IntegerSimulation:
    dataset: str
    modes: list[IntegerMode]
    rasters: list[Path]
    onnx: list[OnnxCheck] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The record as plain JSON data (``eideploy simulate --json``)."""
        doc = json_plain(asdict(self))
        for entry, mode in zip(doc["modes"], self.modes, strict=True):
            entry["saturation_events"] = mode.saturation_events
        return {"backend": "integer", **doc}


def simulate_integer(out: str | Path, *, data: str | None = None, data_dir: str | None = None,
                     split: str = "test", divisions: Sequence[str] = DEFAULT_DIVISIONS,
                     raster_dir: str | Path | None = None, onnx: bool = False,
                     batch_size: int = DEFAULT_BATCH_SIZE,
                     log: Callable[[str], None] | None = None) -> IntegerSimulation:
    """The export's quantized graph in the integer simulator, one run per division mode;
    sample 0's spikes per mode in ``raster_dir`` (default ``out/simulation``); with ``onnx``,
    each mode's network as ``integer-<mode>.onnx`` there, checked against onnxruntime.
    ``log`` hears one line per stage (a mode, the rasters, an ONNX check)."""
    say = log or (lambda message: None)
    loaded = export_data(out, data, data_dir, split, quantized=True)
    graph, x = loaded.graph, loaded.x
    raster_dir = Path(raster_dir) if raster_dir is not None else Path(out) / "simulation"
    modes = []
    for m in divisions:
        say(f"integer simulator, division {m}: {len(x)} samples")
        modes.append(IntegerMode(m, *integer_accuracy(graph, x, loaded.y, division=m,
                                                      batch_size=batch_size)))
    say(f"spike rasters of sample 0 -> {raster_dir}")
    raster = {}
    for mode in divisions:
        states = IntegerSimulator(graph, mode).run(x[:1], return_states=True).states
        raster[f"integer {mode}"] = {p: s["output"][:, 0].reshape(graph.T, -1)
                                     for p, s in states.items() if "output" in s}
    written = write_rasters(raster_dir, raster, f"{loaded.dataset} sample 0")
    checks = []
    for mode in divisions if onnx else ():
        path = raster_dir / f"integer-{mode.replace(':', '-')}.onnx"
        say(f"ONNX, division {mode}: {path}, checked against onnxruntime")
        save_onnx(IntegerSimulator(graph, mode), path)
        check = check_against_simulator(graph, x, mode, batch_size=batch_size)
        checks.append(OnnxCheck(mode, path, bool(check["bit_identical"]),
                                int(check["mismatches"]), int(check["elements"])))
    return IntegerSimulation(loaded.dataset, modes, written, checks)


# --------------------------------------------------------------------------- analog
@dataclass
class AnalogSimulation:
    dataset: str
    accuracy: AnalogAccuracy
    rasters: list[Path]
    seed: int = 0
    calibration_samples: int = 0

    def to_dict(self) -> dict:
        """The record as plain JSON data (``eideploy simulate --json``)."""
        doc = json_plain(asdict(self))
        doc["accuracy"].update(calibrated_mean=self.accuracy.calibrated_mean,
                               calibrated_std=self.accuracy.calibrated_std,
                               decoded_mean=self.accuracy.decoded_mean,
                               decoded_std=self.accuracy.decoded_std)
        return {"backend": "analog", **doc}


def simulate_analog(out: str | Path, *, data: str | None = None, data_dir: str | None = None,
                    split: str = "test", mismatch: float = 0.0, trials: int = 1, seed: int = 0,
                    calibrate: int = 0, raster_dir: str | Path | None = None,
                    batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False,
                    integrator: str = "piecewise", device: str = "auto") -> AnalogSimulation:
    """The export's ``dynapse2.json`` in the analog simulator: accuracy over ``trials``
    mismatch draws (seeds ``seed``, ``seed + 1``, ...), each also scored after a readout
    calibration on ``calibrate`` unlabelled training samples (0: not); sample 0's spikes of the
    first draw, binned per model step, in ``raster_dir`` (default ``out/simulation``). With a
    calibration each draw is also decided by a readout decoder fitted to the integer
    simulator's class totals on the same unlabelled samples (``analog.fit_readout_decoder``).
    ``integrator`` and ``device``: the analog simulator's (``AnalogSimulator``; ``device`` for
    ``integrator="torch"`` only)."""
    options = {"integrator": integrator, "device": device}
    out = Path(out)
    loaded = export_data(out, data, data_dir, split, quantized=True)
    config = read_config(out / "dynapse2.json")
    x_cal = (calibration_inputs(loaded.dataset, data_dir, loaded.graph.T, calibrate,
                                loaded.graph.meta.get("data")) if calibrate else None)
    teacher = None
    if x_cal is not None:  # the model's own class totals on the unlabelled inputs
        integer = IntegerSimulator(loaded.graph, "exact").run(x_cal)
        teacher = class_totals(integer.counts, loaded.graph.readout_settings.classes)
    result = accuracy_trials(config, loaded.x, loaded.y, mismatch=mismatch, trials=trials,
                             seed=seed, batch_size=batch_size, progress=progress,
                             calibration=x_cal, teacher=teacher, simulator_options=options)
    sample = AnalogSimulator(config, mismatch=mismatch, seed=seed, **options
                             ).run(loaded.x[:1], raster=True)
    sizes = {p.name: p.size for p in loaded.graph.populations}
    binned = bin_spike_times(sample.raster or {}, sizes, sample.window)
    raster_dir = Path(raster_dir) if raster_dir is not None else out / "simulation"
    written = write_rasters(raster_dir, {"analog": binned},
                            f"{loaded.dataset} sample 0, analog ({100 * mismatch:g}% mismatch, "
                            "spikes per 1 ms step)") if binned else []
    return AnalogSimulation(loaded.dataset, result, written, seed,
                            0 if x_cal is None else len(x_cal))


def bin_spike_times(raster: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    sizes: Mapping[str, int], window: float) -> dict[str, np.ndarray]:
    """Spike times (s) and neuron indices per population -> spikes per model step (one
    ``DT_SECONDS`` bin) and neuron, ``(steps, neurons)``, as the integer rasters; the window's
    steps include the analog chain's tail. A population missing from ``sizes`` is as wide as
    its highest spiking neuron."""
    steps = max(int(round(window / DT_SECONDS)), 1)
    binned = {}
    for pop, (times, neurons) in raster.items():
        counts = np.zeros((steps, sizes.get(pop, int(np.max(neurons, initial=-1)) + 1)))
        step = np.minimum((np.asarray(times) / DT_SECONDS).astype(int), steps - 1)
        np.add.at(counts, (step, np.asarray(neurons, dtype=int)), 1)
        binned[pop] = counts
    return binned


def write_rasters(directory: str | Path, raster: Mapping[str, Mapping[str, np.ndarray]],
                  title: str) -> list[Path]:
    """``raster.png`` and ``spikes.npz`` (``variant/population`` -> (T, neurons)) of one sample,
    each written atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{f"{v}/{p}": a for v, pops in raster.items()
                                   for p, a in pops.items()})
    atomic_write_bytes(directory / "spikes.npz", buffer.getvalue())
    png = directory / "raster.png"
    plot_raster(raster, directory / ".raster.png.partial", title=title)
    os.chmod(directory / ".raster.png.partial", FILE_MODE)
    (directory / ".raster.png.partial").replace(png)
    return [png, directory / "spikes.npz"]
